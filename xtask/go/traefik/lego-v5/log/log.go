// Package log holds lego's logger.
package log

import "log/slog"

var logger = slog.Default()

// SetDefault sets the logger.
func SetDefault(l *slog.Logger) { logger = l }

// Default is the logger.
func Default() *slog.Logger { return logger }
