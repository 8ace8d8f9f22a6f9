//! Tests for the template engine: filters, escaping modes, and the
//! store-time refusals (unknown names, PII in pings, runaway templates).

use super::*;
use serde_json::json;

fn value_maps() -> ValueMaps {
    let roof =
        [("tile", "TILE_ROOF"), ("flat", "FLAT_ROOF")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    [("roof".to_owned(), roof)].into_iter().collect()
}

fn context(lead: serde_json::Value) -> RenderContext {
    RenderContext {
        lead,
        sale_id: Some("sale_1".into()),
        ping_id: Some("ping_1".into()),
        ping_token: Some("tok_1".into()),
        price: Some("12.50".into()),
        currency: Some("EUR".into()),
        campaign_id: "cmp_1".into(),
        buyer_id: "buy_1".into(),
        supplier_id: "sup_1".into(),
        now: "2024-05-01T12:00:00Z".into(),
        test: false,
        endpoint_url: None,
    }
}

fn lead() -> serde_json::Value {
    json!({
        "id": "lead_1", "vertical": "solar", "first_name": "Ada", "last_name": "Lovelace",
        "email": "ada@example.com", "phone": "+4989123456", "zip": "80331", "country": "DE",
        "state": "BY", "city": "München", "street": "Marienplatz 1",
        "fields": {"roof": "tile", "kwh": 4200, "owner": true, "dob": "1990-02-03", "empty": ""},
        "consent": {"tcpa": true, "captured_at": "2024-05-01T10:00:00+02:00"},
    })
}

/// Compiles `source` for `stage` and renders it against `lead`.
fn render_with(stage: Stage, source: &str, escape: Escape, lead: serde_json::Value) -> Result<String, RenderError> {
    let mut set = TemplateSet::new(stage, value_maps());
    set.add("t", source, escape).expect("template compiles");
    set.render("t", &context_value(&context(lead), stage))
}

fn render(source: &str) -> String {
    render_with(Stage::Post, source, Escape::None, lead()).expect("renders")
}

/// The messages of a refused template.
fn refusal(stage: Stage, source: &str) -> Vec<String> {
    let mut set = TemplateSet::new(stage, value_maps());
    let errors = set.add("p", source, Escape::None).expect_err("template is refused");
    assert!(errors.iter().all(|e| e.field == "p"));
    errors.into_iter().map(|e| e.message).collect()
}

#[test]
fn variables_render() {
    assert_eq!(
        render("{{ lead.email }}|{{ lead.fields.kwh }}|{{ price }} {{ currency }}|{{ test }}|{{ campaign.id }}"),
        "ada@example.com|4200|12.50 EUR|false|cmp_1"
    );
    assert_eq!(
        render("{{ sale.id }} {{ ping.id }} {{ ping.token }} {{ buyer.id }} {{ supplier.id }}"),
        "sale_1 ping_1 tok_1 buy_1 sup_1"
    );
    assert_eq!(render("{{ lead.consent.tcpa }}:{{ lead.consent.ip }}:{{ lead.external_id }}"), "true::");
}

#[test]
fn phone_filters() {
    assert_eq!(render("{{ lead.phone | digits }}"), "4989123456");
    assert_eq!(render("{{ lead.phone | e164 }}"), "+4989123456");
    assert_eq!(render("{{ lead.phone | national }}"), "89123456");
    assert_eq!(national(&Value::from("+1 (415) 555-0123")), "4155550123");
    assert_eq!(national(&Value::from("+353861234567")), "861234567");
    assert_eq!(national(&Value::from("+442071234567")), "2071234567");
    assert_eq!(national(&Value::from("089 123456")), "089123456");
    assert_eq!(national(&Value::from("+")), "");
    assert_eq!(e164(&Value::from("")), "");
}

#[test]
fn text_filters() {
    assert_eq!(render("{{ lead.city | upper }} {{ 'ÄB' | lower }}"), "MÜNCHEN äb");
    assert_eq!(render("{{ lead.city | truncate(3) }}"), "Mün");
    assert_eq!(render("{{ 'a b&c/ä' | urlencode }}"), "a%20b%26c%2F%C3%A4");
    assert_eq!(render("{{ lead.fields.roof | map('roof') }} {{ 'slate' | map('roof') }}"), "TILE_ROOF slate");
    assert_eq!(render("{{ lead.fields.kwh | map('roof') }}"), "4200");
    assert_eq!(render("{{ lead.fields.empty | default('n/a') }} {{ lead.city | default('x') }}"), "n/a München");
    assert_eq!(
        render("{{ lead.fields.missing | default('none given') }}{{ lead.fields.missing | default }}"),
        "none given"
    );
    assert_eq!(render("{{ lead.street | replace(' ', '_') | trim }}"), "Marienplatz_1");
}

#[test]
fn date_filter() {
    assert_eq!(render("{{ lead.consent.captured_at | date('%d.%m.%Y %H:%M') }}"), "01.05.2024 10:00");
    assert_eq!(render("{{ lead.fields.dob | date('%m/%d/%Y') }}"), "02/03/1990");
    assert_eq!(render("{{ now | date('%s') }}"), "1714564800");
    assert_eq!(render("{{ lead.fields.missing | date('%Y') }}"), "");
    let err = render_with(Stage::Post, "{{ lead.city | date('%Y') }}", Escape::None, lead()).expect_err("not a date");
    assert_eq!(err.field, "t");
    assert!(err.message.contains("not an RFC 3339"), "{}", err.message);
}

#[test]
fn loops_over_custom_fields() {
    let out =
        render("{% for k, v in lead.fields | items %}{{ k }}={{ v }}{% if not loop.last %};{% endif %}{% endfor %}");
    assert_eq!(out, "dob=1990-02-03;empty=;kwh=4200;owner=true;roof=tile");
    assert_eq!(render("{% set who = lead.first_name ~ ' ' ~ lead.last_name %}{{ who | upper }}"), "ADA LOVELACE");
    assert_eq!(render("{% if lead.state is defined and lead.fields.x is undefined %}ok{% endif %}"), "ok");
}

#[test]
fn output_escaping_follows_the_mode() {
    let hostile = json!({"first_name": "a\"b\\c<d>&e'\n\u{1}ü"});
    let out = |escape| render_with(Stage::Post, "{{ lead.first_name }}", escape, hostile.clone()).expect("renders");
    assert_eq!(out(Escape::JsonString), "a\\\"b\\\\c<d>&e'\\n\\u0001ü");
    assert_eq!(out(Escape::XmlText), "a&quot;b\\c&lt;d&gt;&amp;e&apos;&#10;\u{FFFD}ü");
    assert_eq!(out(Escape::UrlComponent), "a%22b%5Cc%3Cd%3E%26e%27%0A%01%C3%BC");
    assert_eq!(out(Escape::None), "a\"b\\c<d>&e'\n\u{1}ü");
    // Literal template text is the author's and stays as written.
    let literal =
        render_with(Stage::Post, "<x a=\"1\">{{ lead.first_name }}</x>", Escape::XmlText, json!({"first_name": "<"}));
    assert_eq!(literal.expect("renders"), "<x a=\"1\">&lt;</x>");
}

#[test]
fn content_types_choose_escaping() {
    assert_eq!(Escape::for_content_type("application/json; charset=utf-8"), Escape::JsonString);
    assert_eq!(Escape::for_content_type("application/vnd.api+json"), Escape::JsonString);
    assert_eq!(Escape::for_content_type("text/xml"), Escape::XmlText);
    assert_eq!(Escape::for_content_type("application/soap+xml; charset=utf-8"), Escape::XmlText);
    assert_eq!(Escape::for_content_type("text/plain"), Escape::None);
}

#[test]
fn refuses_unknown_variables_but_not_bound_names() {
    assert_eq!(refusal(Stage::Post, "{{ lead.emial }}"), ["unknown variable `lead.emial`"]);
    assert_eq!(refusal(Stage::Post, "{{ leed.email }}"), ["unknown variable `leed.email`"]);
    assert_eq!(refusal(Stage::Post, "{{ lead.consent.name }}"), ["unknown variable `lead.consent.name`"]);
    // Subscripting the whole lead would dodge the per-field checks.
    assert_eq!(refusal(Stage::Post, "{{ lead['email'] }}"), ["unknown variable `lead`"]);
    assert_eq!(refusal(Stage::Post, "{{ range(3) }}"), ["unknown variable `range`"]);
    let mut set = TemplateSet::new(Stage::Post, value_maps());
    let bound = "{% set x = lead.zip %}{% for k in lead.fields %}{{ k }}{{ x }}{{ loop.index }}{% endfor %}";
    assert_eq!(set.add("ok", bound, Escape::None), Ok(()));
}

#[test]
fn refuses_unknown_filters_and_tests_even_in_untaken_branches() {
    assert_eq!(refusal(Stage::Post, "{% if false %}{{ lead.zip | shout }}{% endif %}"), ["unknown filter `shout`"]);
    assert_eq!(refusal(Stage::Post, "{% filter tojson %}x{% endfilter %}"), ["unknown filter `tojson`"]);
    assert_eq!(refusal(Stage::Post, "{% if lead.zip is odd %}x{% endif %}"), ["unknown test `odd`"]);
    assert_eq!(refusal(Stage::Post, "{{ lead.zip | safe }}"), ["unknown filter `safe`"]);
    assert_eq!(
        refusal(Stage::Post, "{{ lead.zip | map('colour') }}"),
        ["map: no value map named \"colour\" in value_maps"]
    );
    assert_eq!(refusal(Stage::Post, "{{ lead.zip | date('%Q') }}"), ["date: bad format \"%Q\""]);
    let method = refusal(Stage::Post, "{{ lead.fields.x.upper() }}");
    assert_eq!(method, ["method calls are not supported (`.upper(…)`)"]);
    assert!(refusal(Stage::Post, "{% autoescape false %}{{ lead.zip }}{% endautoescape %}")[0].contains("autoescape"));
}

#[test]
fn scan_ignores_strings_comments_and_raw_blocks() {
    let source =
        "{# {{ x | nope }} #}{% raw %}{{ y | nope }}{% endraw %}{{ 'a|nope' ~ \"}}|nope\" }}{{ {'k': '}}'} | length }}";
    let usages = scan_usages(source).expect("scans");
    let names: Vec<&str> = usages.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["length"]);
    let mut set = TemplateSet::new(Stage::Post, value_maps());
    assert_eq!(set.add("ok", source, Escape::None), Ok(()));
    assert_eq!(set.render("ok", &Value::from(())).expect("renders"), "{{ y | nope }}a|nope}}|nope1");
}

#[test]
fn refuses_syntax_errors_includes_and_oversized_templates() {
    assert!(refusal(Stage::Post, "{{ lead.zip ")[0].starts_with("syntax error"));
    assert!(refusal(Stage::Post, "{% include 'other' %}")[0].starts_with("syntax error"));
    assert!(refusal(Stage::Post, "{% macro m() %}{% endmacro %}")[0].starts_with("syntax error"));
    let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
    assert!(refusal(Stage::Post, &big)[0].contains("the limit is"));
}

#[test]
fn check_render_catches_arity_and_runaway_templates() {
    assert!(refusal(Stage::Post, "{{ lead.zip | truncate }}")[0].starts_with("missing argument"));
    assert!(refusal(Stage::Post, "{{ lead.zip | upper(1) }}")[0].starts_with("too many arguments"));
    assert!(refusal(Stage::Post, "{{ 'x' * 100000000 }}")[0].contains("fuel"));
}

#[test]
fn ping_templates_may_not_name_pii() {
    for field in ["email", "phone", "first_name", "last_name", "street"] {
        let messages = refusal(Stage::Ping, &format!("{{{{ lead.{field} | upper }}}}"));
        assert!(messages[0].contains("personal data"), "{field}: {messages:?}");
    }
    assert_eq!(refusal(Stage::Ping, "{{ lead.city }}"), ["`lead.city` is not sent in a ping"]);
    assert_eq!(refusal(Stage::Ping, "{{ sale.id }}"), ["`sale.id` is not known when pinging"]);
    let mut set = TemplateSet::new(Stage::Ping, value_maps());
    let anonymous =
        "{{ lead.zip }}{{ lead.fields.roof }}{{ lead.vertical }}{{ lead.country }}{{ lead.state }}{{ ping.id }}";
    assert_eq!(set.add("ok", anonymous, Escape::None), Ok(()));
}

#[test]
fn ping_context_holds_no_pii_even_if_the_caller_passes_it() {
    let vars = context_value(&context(lead()), Stage::Ping);
    let lead = vars.get_attr("lead").expect("lead");
    let keys: Vec<String> = lead.try_iter().expect("map").map(|k| k.to_string()).collect();
    assert_eq!(keys, ["country", "fields", "state", "vertical", "zip"]);
}

#[test]
fn odd_lead_shapes_render_without_panicking() {
    let odd = json!({"first_name": null, "fields": {"deep": [[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]], "n": 1.5, "big": u64::MAX}});
    let out = render_with(
        Stage::Post,
        "{{ lead.first_name }}|{{ lead.fields.n }}|{{ lead.fields.big }}|{{ lead.fields.deep | length }}",
        Escape::None,
        odd,
    );
    assert_eq!(out.expect("renders"), "|1.5|18446744073709551615|1");
    let not_object = render_with(Stage::Post, "[{{ lead.zip }}]", Escape::None, json!("nope"));
    assert_eq!(not_object.expect("renders"), "[]");
}
