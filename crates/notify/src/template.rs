//! Templates: Go `text/template` syntax, as Argo users write it, rendered with the `gtmpl`
//! crate (a Rust implementation of Go's template language: fields, `if`/`else`/`range`/`with`,
//! variables, pipelines, and Go's builtins `and or not len index print printf eq ne lt le gt
//! ge`).
//!
//! A template is the YAML of a `template.<name>` key: `message` plus per-service fields
//! (`email.subject`, `slack.attachments`, `webhook.<name>.body`, `teams.title`, `github.status`,
//! ...). Every string in it is a template; each is rendered with `.rollout` (the Rollout,
//! status included) and `.recipient`. The templates a condition sends are rendered in order and
//! merged into one [`Notification`], a later non-empty field winning.
//!
//! The sprig functions Argo's catalog and documentation use are provided: `add sub mul div mod
//! max min default empty coalesce ternary toJson toPrettyJson toString upper lower title trim
//! trimPrefix trimSuffix replace contains hasPrefix hasSuffix quote squote join split repeat
//! trunc nospace`. Where Sluice differs from Argo: the rest of sprig, and the `.time` /
//! `.strings` helpers called through `call`, are not offered; a template using them is an error
//! naming the function. A map is ranged over in no fixed order (Go sorts the keys).

use std::collections::HashMap;

use gtmpl::{Context, Template, Value as G};
use serde_json::{Map, Value};

use crate::{config::Config, subscription::Destination};

/// The most bytes one rendered field may have: well above any chat message or mail.
pub const MAX_RENDERED_BYTES: usize = 256 * 1024;

/// A rendered notification: the template's fields with every string rendered (`message`,
/// `slack`, `email`, `webhook`, `teams`, `github`, ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Notification(pub Value);

impl Notification {
    /// The plain message every service falls back to.
    pub fn message(&self) -> &str {
        self.0["message"].as_str().unwrap_or_default()
    }

    /// A rendered string field, by path (`["email", "subject"]`); empty when absent.
    pub fn text(&self, path: &[&str]) -> &str {
        path.iter()
            .try_fold(&self.0, |value, key| value.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// A field, by path.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(&self.0, |value, key| value.get(key))
    }
}

/// Parses every string of a template, so a malformed one is refused when the configuration is
/// read rather than when an event comes.
pub fn check(template: &Value) -> Result<(), String> {
    let mut error = None;
    walk(template, &mut |text| {
        if error.is_none()
            && let Err(e) = parse(text)
        {
            error = Some(format!("{text:?} does not parse: {e}"));
        }
    });
    error.map_or(Ok(()), Err)
}

fn walk(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => f(text),
        Value::Array(items) => items.iter().for_each(|item| walk(item, f)),
        Value::Object(map) => map.values().for_each(|item| walk(item, f)),
        _ => {}
    }
}

fn parse(text: &str) -> Result<Template, String> {
    let mut template = Template::default();
    template.add_funcs(FUNCS);
    // The lexer names the end of the text as the character NUL.
    template
        .parse(text)
        .map_err(|e| e.to_string().replace('\0', "end of text"))?;
    Ok(template)
}

/// Renders one template text with `vars`.
pub fn render_text(text: &str, vars: &G) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_owned());
    }
    let template = parse(text)?;
    let out = template
        .render(&Context::from(vars.clone()))
        .map_err(|e| e.to_string())?;
    if out.len() > MAX_RENDERED_BYTES {
        return Err(format!("renders to more than {MAX_RENDERED_BYTES} bytes"));
    }
    Ok(out)
}

/// The variables a template sees: `.rollout` and `.recipient`.
pub fn vars(rollout: &Value, recipient: &str) -> G {
    let mut map = HashMap::new();
    map.insert("rollout".to_owned(), to_gtmpl(rollout));
    map.insert("recipient".to_owned(), G::String(recipient.to_owned()));
    G::Map(map)
}

/// Renders every string of one template.
pub fn render(name: &str, template: &Value, vars: &G) -> Result<Notification, String> {
    fn go(value: &Value, vars: &G, path: &mut Vec<String>) -> Result<Value, String> {
        Ok(match value {
            Value::String(text) => Value::String(
                render_text(text, vars).map_err(|e| format!("{}: {e}", path.join(".")))?,
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| go(item, vars, path))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, item) in map {
                    path.push(key.clone());
                    let rendered = go(item, vars, path);
                    path.pop();
                    out.insert(key.clone(), rendered?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
    go(template, vars, &mut Vec::new())
        .map(Notification)
        .map_err(|e| format!("template {name}: {e}"))
}

/// Renders the templates `names` for `destination` and merges them, in order.
pub fn render_all(
    config: &Config,
    names: &[String],
    rollout: &Value,
    destination: &Destination,
) -> Result<Notification, String> {
    let vars = vars(rollout, &destination.recipient);
    let mut merged = Value::Object(Map::new());
    for name in names {
        let template = config
            .templates
            .get(name)
            .ok_or_else(|| format!("template {name} is not configured"))?;
        let Notification(rendered) = render(name, template, &vars)?;
        merge(&mut merged, rendered);
    }
    Ok(Notification(merged))
}

/// Merges `from` into `into`: objects key by key, a non-empty value winning.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (_, Value::String(s)) if s.is_empty() => {}
        (into, from) => *into = from,
    }
}

/// A JSON value as the template engine reads it: objects are maps, so a missing key is "no
/// value" (false in `if`), as in Go.
pub fn to_gtmpl(value: &Value) -> G {
    match value {
        Value::Null => G::Nil,
        Value::Bool(b) => G::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                G::from(i)
            } else if let Some(u) = n.as_u64() {
                G::from(u)
            } else {
                G::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => G::String(s.clone()),
        Value::Array(items) => G::Array(items.iter().map(to_gtmpl).collect()),
        Value::Object(map) => G::Map(map.iter().map(|(k, v)| (k.clone(), to_gtmpl(v))).collect()),
    }
}

/// A template value as JSON (for `toJson`).
fn to_json(value: &G) -> Value {
    match value {
        G::NoValue | G::Nil | G::Function(_) => Value::Null,
        G::Bool(b) => Value::Bool(*b),
        G::String(s) => Value::String(s.clone()),
        G::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Null),
        G::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        G::Map(map) | G::Object(map) => {
            let mut sorted: Vec<_> = map.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
            )
        }
    }
}

/// Go's truth: false, 0, empty, nil and no value are false.
fn truthy(value: &G) -> bool {
    match value {
        G::NoValue | G::Nil => false,
        G::Bool(b) => *b,
        G::String(s) => !s.is_empty(),
        G::Number(n) => n.as_f64().is_some_and(|f| f != 0.0) || n.as_u64().is_some_and(|u| u != 0),
        G::Array(items) => !items.is_empty(),
        G::Map(map) | G::Object(map) => !map.is_empty(),
        G::Function(_) => true,
    }
}

/// A value as text, as sprig's `toString` writes it.
fn text(value: &G) -> String {
    match value {
        G::NoValue | G::Nil => String::new(),
        other => other.to_string(),
    }
}

/// A value as a whole number, as sprig's `toInt64` reads it (strings parsed, else 0).
fn int(value: &G) -> i64 {
    match value {
        G::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .unwrap_or(0),
        G::String(s) => s.trim().parse().unwrap_or(0),
        G::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

type Result_ = Result<G, String>;

fn arity(name: &str, args: &[G], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("{name} takes {n} argument(s), got {}", args.len()))
    }
}

fn fold(name: &str, args: &[G], f: fn(i64, i64) -> Option<i64>) -> Result_ {
    let (first, rest) = args
        .split_first()
        .ok_or_else(|| format!("{name} takes at least one argument"))?;
    rest.iter()
        .try_fold(int(first), |acc, v| f(acc, int(v)))
        .map(G::from)
        .ok_or_else(|| format!("{name}: out of range or division by zero"))
}

fn add(args: &[G]) -> Result_ {
    fold("add", args, i64::checked_add)
}
fn sub(args: &[G]) -> Result_ {
    fold("sub", args, i64::checked_sub)
}
fn mul(args: &[G]) -> Result_ {
    fold("mul", args, i64::checked_mul)
}
fn div(args: &[G]) -> Result_ {
    fold("div", args, i64::checked_div)
}
fn modulo(args: &[G]) -> Result_ {
    fold("mod", args, i64::checked_rem)
}
fn max(args: &[G]) -> Result_ {
    fold("max", args, |a, b| Some(a.max(b)))
}
fn min(args: &[G]) -> Result_ {
    fold("min", args, |a, b| Some(a.min(b)))
}
/// `default FALLBACK VALUE`: the value, or the fallback when the value is empty.
fn default(args: &[G]) -> Result_ {
    match args {
        [fallback] => Ok(fallback.clone()),
        [fallback, value] => Ok(if truthy(value) { value } else { fallback }.clone()),
        _ => Err(format!(
            "default takes 1 or 2 arguments, got {}",
            args.len()
        )),
    }
}
fn empty(args: &[G]) -> Result_ {
    Ok(G::Bool(args.first().is_none_or(|v| !truthy(v))))
}
fn coalesce(args: &[G]) -> Result_ {
    Ok(args.iter().find(|v| truthy(v)).cloned().unwrap_or(G::Nil))
}
/// `ternary TRUE FALSE CONDITION`.
fn ternary(args: &[G]) -> Result_ {
    arity("ternary", args, 3)?;
    Ok(if truthy(&args[2]) { &args[0] } else { &args[1] }.clone())
}
fn to_json_fn(args: &[G]) -> Result_ {
    arity("toJson", args, 1)?;
    serde_json::to_string(&to_json(&args[0]))
        .map(G::String)
        .map_err(|e| e.to_string())
}
fn to_pretty_json(args: &[G]) -> Result_ {
    arity("toPrettyJson", args, 1)?;
    serde_json::to_string_pretty(&to_json(&args[0]))
        .map(G::String)
        .map_err(|e| e.to_string())
}
fn to_string(args: &[G]) -> Result_ {
    arity("toString", args, 1)?;
    Ok(G::String(text(&args[0])))
}
fn one_string(name: &str, args: &[G], f: impl Fn(&str) -> String) -> Result_ {
    arity(name, args, 1)?;
    Ok(G::String(f(&text(&args[0]))))
}
fn upper(args: &[G]) -> Result_ {
    one_string("upper", args, str::to_uppercase)
}
fn lower(args: &[G]) -> Result_ {
    one_string("lower", args, str::to_lowercase)
}
fn title(args: &[G]) -> Result_ {
    one_string("title", args, |s| {
        let mut out = String::with_capacity(s.len());
        let mut start = true;
        for c in s.chars() {
            if start {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            start = c.is_whitespace();
        }
        out
    })
}
fn trim(args: &[G]) -> Result_ {
    one_string("trim", args, |s| s.trim().to_owned())
}
fn nospace(args: &[G]) -> Result_ {
    one_string("nospace", args, |s| {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    })
}
fn quote(args: &[G]) -> Result_ {
    Ok(G::String(
        args.iter()
            .map(|a| format!("{:?}", text(a)))
            .collect::<Vec<_>>()
            .join(" "),
    ))
}
fn squote(args: &[G]) -> Result_ {
    Ok(G::String(
        args.iter()
            .map(|a| format!("'{}'", text(a)))
            .collect::<Vec<_>>()
            .join(" "),
    ))
}
/// `trimPrefix PREFIX S`.
fn trim_prefix(args: &[G]) -> Result_ {
    arity("trimPrefix", args, 2)?;
    let s = text(&args[1]);
    Ok(G::String(
        s.strip_prefix(&text(&args[0])).unwrap_or(&s).to_owned(),
    ))
}
/// `trimSuffix SUFFIX S`.
fn trim_suffix(args: &[G]) -> Result_ {
    arity("trimSuffix", args, 2)?;
    let s = text(&args[1]);
    Ok(G::String(
        s.strip_suffix(&text(&args[0])).unwrap_or(&s).to_owned(),
    ))
}
/// `replace OLD NEW S`.
fn replace(args: &[G]) -> Result_ {
    arity("replace", args, 3)?;
    Ok(G::String(
        text(&args[2]).replace(&text(&args[0]), &text(&args[1])),
    ))
}
/// `contains SUBSTR S`.
fn contains(args: &[G]) -> Result_ {
    arity("contains", args, 2)?;
    Ok(G::Bool(text(&args[1]).contains(&text(&args[0]))))
}
/// `hasPrefix PREFIX S`.
fn has_prefix(args: &[G]) -> Result_ {
    arity("hasPrefix", args, 2)?;
    Ok(G::Bool(text(&args[1]).starts_with(&text(&args[0]))))
}
/// `hasSuffix SUFFIX S`.
fn has_suffix(args: &[G]) -> Result_ {
    arity("hasSuffix", args, 2)?;
    Ok(G::Bool(text(&args[1]).ends_with(&text(&args[0]))))
}
/// `join SEP LIST`.
fn join(args: &[G]) -> Result_ {
    arity("join", args, 2)?;
    let items = match &args[1] {
        G::Array(items) => items.iter().map(text).collect::<Vec<_>>(),
        other => vec![text(other)],
    };
    Ok(G::String(items.join(&text(&args[0]))))
}
/// `splitList SEP S` (sprig's `split` gives a map; the list is what templates range over).
fn split_list(args: &[G]) -> Result_ {
    arity("splitList", args, 2)?;
    let sep = text(&args[0]);
    Ok(G::Array(
        text(&args[1])
            .split(sep.as_str())
            .map(|s| G::String(s.to_owned()))
            .collect(),
    ))
}
/// `repeat COUNT S`, bounded by the rendered size.
fn repeat(args: &[G]) -> Result_ {
    arity("repeat", args, 2)?;
    let s = text(&args[1]);
    let count = usize::try_from(int(&args[0])).unwrap_or(0);
    if s.len().saturating_mul(count) > MAX_RENDERED_BYTES {
        return Err(format!("repeat: more than {MAX_RENDERED_BYTES} bytes"));
    }
    Ok(G::String(s.repeat(count)))
}
/// `trunc N S`: the first N characters (the last -N when negative).
fn trunc(args: &[G]) -> Result_ {
    arity("trunc", args, 2)?;
    let s = text(&args[1]);
    let n = int(&args[0]);
    let chars: Vec<char> = s.chars().collect();
    let len = i64::try_from(chars.len()).unwrap_or(i64::MAX);
    let out: String = if n >= 0 {
        chars.iter().take(usize::try_from(n).unwrap_or(0)).collect()
    } else {
        chars
            .iter()
            .skip(usize::try_from(len + n).unwrap_or(0))
            .collect()
    };
    Ok(G::String(out))
}

/// A function of ours as the engine calls it: its message becomes the engine's error.
macro_rules! wrap {
    ($f:ident) => {
        |args: &[G]| $f(args).map_err(gtmpl::FuncError::Generic)
    };
}

/// The functions templates may call besides Go's builtins.
const FUNCS: &[(&str, gtmpl::Func)] = &[
    ("add", wrap!(add)),
    ("sub", wrap!(sub)),
    ("mul", wrap!(mul)),
    ("div", wrap!(div)),
    ("mod", wrap!(modulo)),
    ("max", wrap!(max)),
    ("min", wrap!(min)),
    ("default", wrap!(default)),
    ("empty", wrap!(empty)),
    ("coalesce", wrap!(coalesce)),
    ("ternary", wrap!(ternary)),
    ("toJson", wrap!(to_json_fn)),
    ("toPrettyJson", wrap!(to_pretty_json)),
    ("toString", wrap!(to_string)),
    ("upper", wrap!(upper)),
    ("lower", wrap!(lower)),
    ("title", wrap!(title)),
    ("trim", wrap!(trim)),
    ("nospace", wrap!(nospace)),
    ("quote", wrap!(quote)),
    ("squote", wrap!(squote)),
    ("trimPrefix", wrap!(trim_prefix)),
    ("trimSuffix", wrap!(trim_suffix)),
    ("replace", wrap!(replace)),
    ("contains", wrap!(contains)),
    ("hasPrefix", wrap!(has_prefix)),
    ("hasSuffix", wrap!(has_suffix)),
    ("join", wrap!(join)),
    ("splitList", wrap!(split_list)),
    ("repeat", wrap!(repeat)),
    ("trunc", wrap!(trunc)),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    /// Argo Rollouts' catalog (`notifications-install.yaml`), as shipped: every template must
    /// render.
    pub(crate) const CATALOG: &str = include_str!("../tests/catalog.yaml");

    fn rollout() -> Value {
        json!({
            "metadata": {"name": "shop", "namespace": "prod", "annotations": {"team": "payments"}},
            "spec": {
                "replicas": 3,
                "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]}},
                "template": {"spec": {"containers": [
                    {"name": "app", "image": "shop:2"},
                    {"name": "sidecar", "image": "proxy:1"},
                ]}},
            },
            "status": {"currentStepIndex": 1, "updatedReplicas": 2},
        })
    }

    fn catalog() -> Config {
        let data: BTreeMap<String, String> = serde_norway::from_str::<Value>(CATALOG)
            .expect("the catalog is YAML")["data"]
            .as_object()
            .expect("data")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        Config::parse(&data, &BTreeMap::new())
    }

    #[test]
    fn every_template_of_argo_s_catalog_renders_to_its_documented_fields() {
        let config = catalog();
        assert!(config.problems.is_empty(), "{:?}", config.problems);
        assert!(config.templates.len() >= 9, "{:?}", config.templates.keys());
        let vars = vars(&rollout(), "ops");
        for (name, template) in &config.templates {
            let notification = render(name, template, &vars).expect(name);
            assert!(
                notification.message().contains("shop"),
                "{name}: {notification:?}"
            );
            assert!(!notification.message().contains("<no value>"), "{name}");
            let attachments: Value =
                serde_json::from_str(notification.text(&["slack", "attachments"]))
                    .unwrap_or_else(|e| panic!("{name}: the Slack attachments are JSON: {e}"));
            assert_eq!(attachments[0]["title"], "shop", "{name}");
            let fields = attachments[0]["fields"].as_array().expect("fields");
            assert!(
                fields.iter().any(|f| f["value"] == "Canary"),
                "{name}: {fields:?}"
            );
            assert!(
                fields
                    .iter()
                    .any(|f| f["title"] == "sidecar" && f["value"] == "proxy:1"),
                "{name}"
            );
        }
        let step = render(
            "rollout-step-completed",
            &config.templates["rollout-step-completed"],
            &vars,
        )
        .expect("renders");
        assert_eq!(
            step.message(),
            "Rollout shop step number 2/3 has been completed."
        );
        assert_eq!(
            step.text(&["email", "subject"]),
            "Rollout shop step number 2/3 has been completed."
        );
    }

    #[test]
    fn go_template_forms_users_write_render_as_in_go() {
        let vars = vars(&rollout(), "ops");
        for (text, want) in [
            ("{{.rollout.metadata.name}}", "shop"),
            (
                "{{if .rollout.spec.strategy.blueGreen}}bg{{else}}canary{{end}}",
                "canary",
            ),
            (
                "{{range $index, $c := .rollout.spec.template.spec.containers}}{{if $index}},{{end}}{{$c.name}}={{$c.image}}{{end}}",
                "app=shop:2,sidecar=proxy:1",
            ),
            (
                "{{index .rollout.metadata.annotations \"team\"}}",
                "payments",
            ),
            ("{{.rollout.metadata.name | upper}}", "SHOP"),
            ("{{.recipient}}", "ops"),
            ("{{ add .rollout.status.currentStepIndex 1 }}", "2"),
            (
                "{{ .rollout.metadata.nolabels | default \"none\" }}",
                "none",
            ),
            (
                "{{ toJson .rollout.metadata.annotations }}",
                "{\"team\":\"payments\"}",
            ),
            (
                "{{ printf \"%s/%s\" .rollout.metadata.namespace .rollout.metadata.name }}",
                "prod/shop",
            ),
            ("no template here", "no template here"),
        ] {
            assert_eq!(render_text(text, &vars).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn a_template_error_names_the_template_and_the_field() {
        let template =
            json!({"message": "ok", "slack": {"attachments": "{{ nosuchfunc .rollout }}"}});
        assert!(check(&template).is_err());
        let template = json!({"message": "{{ .rollout.metadata.name.first.second }}"});
        let error = render("broken", &template, &vars(&rollout(), "")).expect_err("fails");
        assert!(error.starts_with("template broken: message: "), "{error}");
        let huge = json!({"message": "{{ repeat 300000 \"x\" }}"});
        assert!(render("huge", &huge, &vars(&rollout(), "")).is_err());
    }

    #[test]
    fn merged_templates_keep_fields_and_later_non_empty_ones_win() {
        let mut into = json!({"message": "a", "email": {"subject": "s"}});
        merge(
            &mut into,
            json!({"message": "", "slack": {"attachments": "[]"}, "email": {"subject": "t"}}),
        );
        assert_eq!(
            into,
            json!({"message": "a", "email": {"subject": "t"}, "slack": {"attachments": "[]"}})
        );
    }
}
