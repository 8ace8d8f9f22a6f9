//! Postal-code centroids and great-circle distance: everything geographic that eligibility
//! needs (DESIGN §3 "geography").
//!
//! The bundled table (`assets/geo/postal-centroids.csv`, GeoNames, CC BY 4.0) maps a
//! (country, postal code) to one centroid and its state. It is compiled into the binary and
//! parsed once, so a lookup is a hash probe with no I/O and no allocation: it runs for every
//! lead and every radius check.
//!
//! Rationale: a lead is placed at its postal-code centroid, never geocoded from the street,
//! so the decision is reproducible and the street never has to leave the post.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// Mean Earth radius (IUGG R1), km: the best single sphere for great-circle distance; the
/// error against the ellipsoid stays under 0.5 %, far below a postal-code centroid's spread.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// The header the table must start with: a renamed or reordered column is a broken asset,
/// not something to guess around.
const CSV_HEADER: &str = "country,postal_code,state_code,place,latitude,longitude";
/// Columns per row, matching `CSV_HEADER`.
const CSV_COLUMNS: usize = 6;
/// Longest postal code accepted for countries without a specific rule: the longest real
/// formats (e.g. "SE-123 45", "AI-2640") fit; anything longer is not a postal code.
const OTHER_CODE_LEN_MAX: usize = 10;
/// Widening of a bounding box in degrees (~0.1 mm): absorbs float rounding so that a point
/// at exactly `km` from the center is never just outside.
const BOX_PAD_DEG: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostalPlace {
    pub point: Point,
    /// State / Land code from the table ("BY", "CA"); empty where the source has none (US
    /// military APO/FPO codes, a few DE exclaves). Shared between rows so the ~52k entries
    /// hold ~60 distinct strings.
    pub state: Arc<str>,
}

impl PostalPlace {
    /// The state code, or None where the table has none.
    pub fn state_code(&self) -> Option<&str> {
        if self.state.is_empty() {
            None
        } else {
            Some(&self.state)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("postal table line {line}: {message}")]
    BadLine { line: usize, message: String },
}

/// Country code as two uppercase ASCII bytes: a `Copy` key that needs no allocation to probe.
type CountryKey = [u8; 2];

#[derive(Debug, Default)]
pub struct PostalTable {
    /// Outer map by country (two entries today), inner by normalized code: `Box<str>` keys
    /// borrow as `&str`, so a lookup probes with the caller's slice.
    by_country: HashMap<CountryKey, HashMap<Box<str>, PostalPlace>>,
    len: usize,
}

static BUNDLED: LazyLock<PostalTable> = LazyLock::new(|| {
    let text = include_str!("../../assets/geo/postal-centroids.csv");
    match PostalTable::parse_csv(text) {
        Ok(table) => table,
        // Our own compile-time asset: a failure here is a build defect, caught by the tests.
        Err(e) => panic!("bundled assets/geo/postal-centroids.csv is broken: {e}"),
    }
});

impl PostalTable {
    /// Parses `country,postal_code,state_code,place,latitude,longitude` rows after that exact
    /// header. Fields may be double-quoted (place names contain commas); `""` inside quotes
    /// is a quote. Every code must already be in its normalized form and appear once.
    pub fn parse_csv(text: &str) -> Result<PostalTable, GeoError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, header)) if header.trim_end_matches('\r') == CSV_HEADER => {}
            _ => return Err(bad_line(1, format!("the header must be `{CSV_HEADER}`"))),
        }
        let mut table = PostalTable::default();
        let mut states: HashMap<String, Arc<str>> = HashMap::new();
        for (index, raw) in lines {
            let line = index + 1;
            let raw = raw.trim_end_matches('\r');
            if raw.is_empty() {
                continue;
            }
            let fields = split_csv_line(raw).map_err(|m| bad_line(line, m))?;
            let row = parse_row(&fields).map_err(|m| bad_line(line, m))?;
            let state = states.entry(row.state.to_owned()).or_insert_with(|| Arc::from(row.state)).clone();
            let place = PostalPlace { point: row.point, state };
            let codes = table.by_country.entry(row.country).or_default();
            if codes.insert(Box::from(row.code), place).is_some() {
                return Err(bad_line(line, format!("duplicate postal code {}", row.code)));
            }
            table.len += 1;
        }
        Ok(table)
    }

    /// The table shipped in `assets/geo/` (GeoNames, CC BY 4.0), parsed once.
    pub fn bundled() -> &'static PostalTable {
        &BUNDLED
    }

    /// Normalizes a postal code for its country (US ZIP+4 → ZIP5, trims spaces); None when
    /// the shape is impossible for the country.
    ///
    /// US: `12345` or `12345-6789`; DE: exactly five digits; other countries: uppercased
    /// letters, digits, spaces and dashes, at most 10 characters, at least one alphanumeric.
    /// `country` is an ISO alpha-2 code in either case; anything else gives None.
    pub fn normalize(country: &str, code: &str) -> Option<String> {
        let country = country_key(country)?;
        let code = code.trim();
        let b = code.as_bytes();
        match &country {
            b"US" => {
                let zip5 = b.len() >= 5 && b[..5].iter().all(u8::is_ascii_digit);
                let plus4 = b.len() == 10 && b[5] == b'-' && b[6..].iter().all(u8::is_ascii_digit);
                (zip5 && (b.len() == 5 || plus4)).then(|| code[..5].to_owned())
            }
            b"DE" => (b.len() == 5 && b.iter().all(u8::is_ascii_digit)).then(|| code.to_owned()),
            _ => {
                let shape_ok = !b.is_empty()
                    && b.len() <= OTHER_CODE_LEN_MAX
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b' ' || *c == b'-')
                    && b.iter().any(u8::is_ascii_alphanumeric);
                shape_ok.then(|| code.to_ascii_uppercase())
            }
        }
    }

    /// The centroid of a postal code. `code` must already be normalized (see `normalize`):
    /// this is the hot path, so it probes exactly and never allocates. `country` may be in
    /// either case.
    pub fn lookup(&self, country: &str, code: &str) -> Option<&PostalPlace> {
        self.by_country.get(&country_key(country)?)?.get(code)
    }

    /// Rows in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The countries the table covers, sorted: a lead's postal code is only known in these.
    pub fn countries(&self) -> Vec<String> {
        let mut countries: Vec<String> =
            self.by_country.keys().map(|key| String::from_utf8_lossy(key).into_owned()).collect();
        countries.sort();
        countries
    }

    /// Rows for one country (0 for a country the table does not cover).
    pub fn count(&self, country: &str) -> usize {
        country_key(country).and_then(|k| self.by_country.get(&k)).map_or(0, HashMap::len)
    }
}

/// Two ASCII letters, uppercased; None for anything else.
fn country_key(country: &str) -> Option<CountryKey> {
    match country.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

fn bad_line(line: usize, message: impl Into<String>) -> GeoError {
    GeoError::BadLine { line, message: message.into() }
}

struct Row<'a> {
    country: CountryKey,
    code: &'a str,
    state: &'a str,
    point: Point,
}

fn parse_row<'a>(fields: &'a [std::borrow::Cow<'a, str>]) -> Result<Row<'a>, String> {
    let [country, code, state, _place, lat, lon] = fields else {
        return Err(format!("expected {CSV_COLUMNS} columns, found {}", fields.len()));
    };
    let key = match country.as_bytes() {
        [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => [*a, *b],
        _ => return Err(format!("country `{country}` is not two uppercase letters")),
    };
    if PostalTable::normalize(country, code).as_deref() != Some(code.as_ref()) {
        return Err(format!("postal code `{code}` is not normalized for {country}"));
    }
    let lat = parse_degrees(lat, 90.0).ok_or_else(|| format!("latitude `{lat}` is not in -90..=90"))?;
    let lon = parse_degrees(lon, 180.0).ok_or_else(|| format!("longitude `{lon}` is not in -180..=180"))?;
    Ok(Row { country: key, code, state, point: Point { lat, lon } })
}

fn parse_degrees(text: &str, limit: f64) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite() && v.abs() <= limit)
}

/// Splits one CSV line. Unquoted fields are taken verbatim; a quoted field runs to the
/// closing quote, with `""` standing for one quote. Rows never span lines in this table.
fn split_csv_line(line: &str) -> Result<Vec<std::borrow::Cow<'_, str>>, String> {
    use std::borrow::Cow;
    let mut fields = Vec::with_capacity(CSV_COLUMNS);
    let mut rest = line;
    loop {
        if let Some(after_quote) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = after_quote.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".to_owned()),
                    Some((i, '"')) => {
                        if after_quote[i + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break i + 1;
                        }
                    }
                    Some((_, c)) => value.push(c),
                }
            };
            fields.push(Cow::Owned(value));
            rest = &after_quote[end..];
            match rest.strip_prefix(',') {
                Some(next) => rest = next,
                None if rest.is_empty() => return Ok(fields),
                None => return Err("text after a closing quote".to_owned()),
            }
        } else {
            match rest.find(',') {
                Some(comma) => {
                    fields.push(Cow::Borrowed(&rest[..comma]));
                    rest = &rest[comma + 1..];
                }
                None => {
                    fields.push(Cow::Borrowed(rest));
                    return Ok(fields);
                }
            }
        }
    }
}

/// A point as a unit vector from the Earth's centre.
///
/// Rationale: the angle between two unit vectors is their great-circle distance divided
/// by the radius, so "within `km`" becomes one dot product against a precomputed bound:
/// the eligibility check of a radius campaign needs no trigonometry per lead (the haversine
/// above stays for reporting distances). Resolution near 0 km is about 0.1 m.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitVector([f64; 3]);

impl Point {
    pub fn unit(self) -> UnitVector {
        let (lat, lon) = (self.lat.to_radians(), self.lon.to_radians());
        UnitVector([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()])
    }
}

impl UnitVector {
    /// The vector's (x, y, z).
    pub fn components(self) -> [f64; 3] {
        self.0
    }

    pub fn dot(self, other: UnitVector) -> f64 {
        self.0[0] * other.0[0] + self.0[1] * other.0[1] + self.0[2] * other.0[2]
    }
}

/// The smallest dot product two unit vectors within `km` of each other can have.
pub fn min_dot_within(km: f64) -> f64 {
    let angle = km / EARTH_RADIUS_KM;
    if angle >= std::f64::consts::PI {
        -1.0
    } else {
        angle.cos()
    }
}

/// Great-circle (haversine) distance in km on the mean Earth radius.
pub fn distance_km(a: Point, b: Point) -> f64 {
    let (lat_a, lat_b) = (a.lat.to_radians(), b.lat.to_radians());
    let half_dlat = (lat_b - lat_a) / 2.0;
    let half_dlon = (b.lon - a.lon).to_radians() / 2.0;
    let h = half_dlat.sin().powi(2) + lat_a.cos() * lat_b.cos() * half_dlon.sin().powi(2);
    // Rounding can push h a hair outside 0..=1 for antipodal points; asin would give NaN.
    2.0 * EARTH_RADIUS_KM * h.clamp(0.0, 1.0).sqrt().asin()
}

/// The lat/lon box that contains every point within `km` of `center` (for indexing).
///
/// Latitudes are clamped to -90..=90. When the circle reaches a pole the box spans all
/// longitudes (-180..=180). Otherwise `lon_min` may be below -180 or `lon_max` above 180
/// when the circle crosses the antimeridian: a point at longitude `p` is inside when `p`,
/// `p - 360` or `p + 360` is in `lon_min..=lon_max`; an index should split such a box in
/// two (`contains` does the wrapping for a single point).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub lat_min: f64,
    pub lat_max: f64,
    pub lon_min: f64,
    pub lon_max: f64,
}

impl BoundingBox {
    /// Whether `point` (longitude in -180..=180) lies in the box, wrapping longitudes as
    /// described on the type.
    pub fn contains(&self, point: Point) -> bool {
        let lat_ok = self.lat_min <= point.lat && point.lat <= self.lat_max;
        let lon_in = |lon: f64| self.lon_min <= lon && lon <= self.lon_max;
        lat_ok && (lon_in(point.lon) || lon_in(point.lon - 360.0) || lon_in(point.lon + 360.0))
    }
}

/// The box around `center` (latitude -90..=90, longitude -180..=180) that contains every
/// point within `km`; a negative or NaN `km` is taken as 0.
///
/// Rationale: the longitude half-width is asin(sin r / cos lat) (J. P. Matuschek, "Finding
/// points within a distance of a latitude/longitude"), the exact extent of a circle on the
/// sphere, not the naive r / cos lat, which is too narrow away from the equator.
pub fn bounding_box(center: Point, km: f64) -> BoundingBox {
    let r = if km > 0.0 { km / EARTH_RADIUS_KM } else { 0.0 };
    let r_deg = r.to_degrees();
    let lat_min = center.lat - r_deg - BOX_PAD_DEG;
    let lat_max = center.lat + r_deg + BOX_PAD_DEG;
    if lat_min <= -90.0 || lat_max >= 90.0 || r >= std::f64::consts::FRAC_PI_2 {
        return BoundingBox {
            lat_min: lat_min.max(-90.0),
            lat_max: lat_max.min(90.0),
            lon_min: -180.0,
            lon_max: 180.0,
        };
    }
    // Not reaching a pole means r < 90° - |lat|, so the ratio is below 1; clamp for rounding.
    let ratio = (r.sin() / center.lat.to_radians().cos()).min(1.0);
    let half_width = ratio.asin().to_degrees() + BOX_PAD_DEG;
    BoundingBox { lat_min, lat_max, lon_min: center.lon - half_width, lon_max: center.lon + half_width }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table() -> &'static PostalTable {
        PostalTable::bundled()
    }

    fn place(country: &str, code: &str) -> Point {
        match table().lookup(country, code) {
            Some(p) => p.point,
            None => panic!("{country} {code} missing from the bundled table"),
        }
    }

    #[test]
    fn bundled_table_has_every_row() {
        assert_eq!(table().count("DE"), 10_814);
        assert_eq!(table().count("US"), 41_488);
        assert_eq!(table().len(), 10_814 + 41_488);
        assert!(!table().is_empty());
        assert_eq!(table().count("FR"), 0);
    }

    #[test]
    fn lookup_finds_state_and_is_case_insensitive_on_country() {
        let munich = table().lookup("de", "80331").expect("80331");
        assert_eq!(munich.state_code(), Some("BY"));
        assert_eq!(table().lookup("US", "90012").map(|p| &*p.state), Some("CA"));
        assert!(table().lookup("DE", "00000").is_none());
        assert!(table().lookup("DEU", "80331").is_none());
        assert!(table().lookup("US", "10001-1234").is_none(), "lookup wants ZIP5");
        // Rows without a state in the source keep an empty code.
        assert_eq!(table().lookup("DE", "87491").map(PostalPlace::state_code), Some(None));
    }

    #[test]
    fn quoted_place_names_with_commas_parse() {
        // "Deutsche Telekom AG, GSUS" is quoted in the file; the row must still be there.
        assert!(table().lookup("DE", "01059").is_some());
        let text = format!("{CSV_HEADER}\nDE,01059,SN,\"A, \"\"B\"\"\",51.08,13.72\n");
        let t = PostalTable::parse_csv(&text).expect("parses");
        assert_eq!(t.lookup("DE", "01059").map(|p| p.point.lat), Some(51.08));
    }

    #[test]
    fn parse_csv_rejects_bad_input_with_line_numbers() {
        let cases: [(&str, usize); 9] = [
            ("", 1),
            ("country,zip\nDE,80331", 1),
            ("{H}\nDE,80331,BY,X,48.1", 2),
            ("{H}\nDE,80331,BY,X,48.1,11.5\nDE,80331,BY,Y,48.1,11.5", 3),
            ("{H}\nDE,8033,BY,X,48.1,11.5", 2),
            ("{H}\nde,80331,BY,X,48.1,11.5", 2),
            ("{H}\nDE,80331,BY,X,91,11.5", 2),
            ("{H}\nDE,80331,BY,X,48.1,NaN", 2),
            ("{H}\nDE,80331,BY,\"X,48.1,11.5", 2),
        ];
        for (text, want_line) in cases {
            let text = text.replace("{H}", CSV_HEADER);
            match PostalTable::parse_csv(&text) {
                Err(GeoError::BadLine { line, .. }) => assert_eq!(line, want_line, "{text}"),
                Ok(_) => panic!("accepted {text:?}"),
            }
        }
    }

    #[test]
    fn parse_csv_accepts_crlf_and_blank_lines() {
        let text = format!("{CSV_HEADER}\r\nUS,10001,NY,New York,40.7,-73.9\r\n\r\n");
        let t = PostalTable::parse_csv(&text).expect("parses");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn normalize_cases() {
        let cases = [
            ("US", "12345", Some("12345")),
            ("us", " 12345-6789 ", Some("12345")),
            ("US", "02134", Some("02134")),
            ("US", "1234", None),
            ("US", "123456", None),
            ("US", "12345-678", None),
            ("US", "12345 6789", None),
            ("US", "1234a", None),
            ("DE", "80331", Some("80331")),
            ("DE", " 01067\t", Some("01067")),
            ("DE", "8033", None),
            ("DE", "803311", None),
            ("DE", "D-80331", None),
            ("DE", "", None),
            ("GB", " sw1a 1aa ", Some("SW1A 1AA")),
            ("AT", "1010", Some("1010")),
            ("NL", "1234-AB", Some("1234-AB")),
            ("GB", "SW1A 1AA EXTRA", None),
            ("GB", "--", None),
            ("GB", "SW1A_1AA", None),
            ("GB", "ŚW1", None),
            ("DEU", "80331", None),
            ("", "80331", None),
        ];
        for (country, code, want) in cases {
            assert_eq!(PostalTable::normalize(country, code).as_deref(), want, "{country} {code:?}");
        }
    }

    #[test]
    fn munich_to_hamburg_is_about_612_km() {
        let d = distance_km(place("DE", "80331"), place("DE", "20095"));
        assert!((d - 612.0).abs() < 5.0, "{d}");
    }

    #[test]
    fn new_york_to_los_angeles_is_about_3940_km() {
        // Published great-circle distance between the two city centres: ~3,936 km.
        let d = distance_km(place("US", "10001"), place("US", "90012"));
        assert!((d - 3936.0).abs() < 15.0, "{d}");
    }

    #[test]
    fn distance_edge_cases() {
        let p = Point { lat: 10.0, lon: 20.0 };
        assert_eq!(distance_km(p, p), 0.0);
        let north = Point { lat: 90.0, lon: 0.0 };
        let south = Point { lat: -90.0, lon: 45.0 };
        let half = std::f64::consts::PI * EARTH_RADIUS_KM;
        assert!((distance_km(north, south) - half).abs() < 1e-6);
        let west = Point { lat: 0.0, lon: 179.5 };
        let east = Point { lat: 0.0, lon: -179.5 };
        assert!(distance_km(west, east) < 112.0, "across the antimeridian");
    }

    #[test]
    fn bounding_box_edge_cases() {
        let b = bounding_box(Point { lat: 89.5, lon: 10.0 }, 100.0);
        assert_eq!((b.lon_min, b.lon_max, b.lat_max), (-180.0, 180.0, 90.0));
        let b = bounding_box(Point { lat: 0.0, lon: 179.9 }, 50.0);
        assert!(b.lon_max > 180.0);
        assert!(b.contains(Point { lat: 0.0, lon: -179.9 }));
        assert!(!b.contains(Point { lat: 0.0, lon: 170.0 }));
        let b = bounding_box(Point { lat: 48.0, lon: 11.0 }, -5.0);
        assert!(b.contains(Point { lat: 48.0, lon: 11.0 }));
        assert!(!b.contains(Point { lat: 48.001, lon: 11.0 }));
        let b = bounding_box(Point { lat: 0.0, lon: 0.0 }, f64::NAN);
        assert!(b.contains(Point { lat: 0.0, lon: 0.0 }));
        let b = bounding_box(Point { lat: 0.0, lon: 0.0 }, 30_000.0);
        assert_eq!((b.lat_min, b.lat_max), (-90.0, 90.0));
    }

    fn point() -> impl Strategy<Value = Point> {
        (-90.0f64..=90.0, -180.0f64..=180.0).prop_map(|(lat, lon)| Point { lat, lon })
    }

    /// The point `km` from `from` along `bearing` (radians), longitude wrapped to ±180.
    fn destination(from: Point, bearing: f64, km: f64) -> Point {
        let r = km / EARTH_RADIUS_KM;
        let (lat1, lon1) = (from.lat.to_radians(), from.lon.to_radians());
        let lat2 = (lat1.sin() * r.cos() + lat1.cos() * r.sin() * bearing.cos()).asin();
        let lon2 = lon1 + (bearing.sin() * r.sin() * lat1.cos()).atan2(r.cos() - lat1.sin() * lat2.sin());
        let lon = (lon2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
        Point { lat: lat2.to_degrees(), lon }
    }

    proptest! {
        #[test]
        fn distance_is_symmetric_and_zero_on_self(a in point(), b in point()) {
            let (ab, ba) = (distance_km(a, b), distance_km(b, a));
            prop_assert!((ab - ba).abs() < 1e-9, "{ab} vs {ba}");
            prop_assert!((0.0..=std::f64::consts::PI * EARTH_RADIUS_KM + 1e-6).contains(&ab));
            prop_assert_eq!(distance_km(a, a), 0.0);
        }

        #[test]
        fn distance_obeys_the_triangle_inequality(a in point(), b in point(), c in point()) {
            let direct = distance_km(a, c);
            let via = distance_km(a, b) + distance_km(b, c);
            prop_assert!(direct <= via + 1e-6, "{direct} > {via}");
        }

        #[test]
        fn bounding_box_contains_every_point_within_radius(
            center in point(),
            km in 0.0f64..5_000.0,
            bearing in 0.0f64..std::f64::consts::TAU,
            fraction in 0.0f64..=1.0,
        ) {
            let p = destination(center, bearing, km * fraction);
            let b = bounding_box(center, km);
            prop_assert!(b.lat_min <= b.lat_max && b.lon_min <= b.lon_max);
            prop_assert!(b.lat_min >= -90.0 && b.lat_max <= 90.0);
            if distance_km(center, p) <= km {
                prop_assert!(b.contains(p), "{p:?} not in {b:?}");
            }
        }
    }

    proptest::proptest! {
        /// The dot-product test and the haversine distance agree, except within a
        /// metre of the boundary where rounding may decide either way.
        #[test]
        fn unit_vectors_agree_with_haversine(
            lat1 in -89.9f64..89.9, lon1 in -180.0f64..180.0, lat2 in -89.9f64..89.9, lon2 in -180.0f64..180.0, km in 0.1f64..5000.0
        ) {
            let (a, b) = (Point { lat: lat1, lon: lon1 }, Point { lat: lat2, lon: lon2 });
            let distance = distance_km(a, b);
            if (distance - km).abs() > 0.001 {
                proptest::prop_assert_eq!(a.unit().dot(b.unit()) >= min_dot_within(km), distance <= km);
            }
        }
    }
}
