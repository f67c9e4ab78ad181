//! Input files of `signalbox weber predict`: the transactions CSV and the optional Weber profiles
//! (the JSON lines `signalbox weber batch` writes). Every error names the file, the line and the
//! field, so a bad row in a million-line export is found without a debugger.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

pub use lifetime::summary::Purchase;

pub use lifetime::churn::WeberFeatures;

/// Longest accepted customer id, in bytes (the store's user ids have the same bound).
pub const MAX_CUSTOMER_ID_BYTES: usize = 256;
/// Largest accepted amount: beyond it sums over a customer's history lose their precision, and a
/// value this large is a unit mistake (cents as dollars, a timestamp in the wrong column).
pub const MAX_AMOUNT: f64 = 1e12;

/// Reads `customer_id,date,amount` rows (a header is required; other columns are ignored; cells
/// are trimmed). Purchases dated after `today` (days since 1970-01-01) are refused: a clock or
/// export mistake would otherwise become a customer who buys in the future.
pub fn read_transactions(path: &Path, today: i32) -> anyhow::Result<Vec<Purchase>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = byte_bar("reading", total);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bar.wrap_read(file));
    let headers = reader
        .headers()
        .map_err(|e| anyhow!("{name}: cannot read the CSV header: {e}"))?
        .clone();
    if headers.iter().all(str::is_empty) {
        bail!("{name}: the file is empty; expected a header customer_id,date,amount and one row per purchase");
    }
    let column = |wanted: &str| -> anyhow::Result<usize> {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                anyhow!("{name}:1: the header has no `{wanted}` column (expected customer_id,date,amount)")
            })
    };
    let (id_col, date_col, amount_col) =
        (column("customer_id")?, column("date")?, column("amount")?);

    let mut purchases = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            anyhow!("{name}:{line}: malformed CSV: {}", csv_kind(&e))
        })?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, csv::Position::line);
        let cell = |i: usize| record.get(i).unwrap_or("");
        let at = |field: &str, why: String| anyhow!("{name}:{line}: {field}: {why}");
        let customer_id = cell(id_col);
        if customer_id.is_empty() {
            return Err(at("customer_id", "must not be empty".into()));
        }
        if customer_id.len() > MAX_CUSTOMER_ID_BYTES {
            return Err(at(
                "customer_id",
                format!("longer than {MAX_CUSTOMER_ID_BYTES} bytes"),
            ));
        }
        let day = parse_date(cell(date_col)).map_err(|why| at("date", why))?;
        if day > today {
            return Err(at(
                "date",
                format!(
                    "{} is after today ({}); purchases cannot be in the future",
                    cell(date_col),
                    format_day(today)
                ),
            ));
        }
        let amount = match cell(amount_col).parse::<f64>() {
            // `-0` is read as 0, not written back as `-0.0`.
            Ok(a) if a.is_finite() && a >= 0.0 => a + 0.0,
            _ => {
                return Err(at(
                    "amount",
                    "must be a number >= 0 (send refunds as the net amount of the order)".into(),
                ))
            }
        };
        if amount > MAX_AMOUNT {
            return Err(at("amount", format!("larger than {MAX_AMOUNT:e}")));
        }
        purchases.push(Purchase {
            customer_id: customer_id.to_owned(),
            day,
            amount,
        });
    }
    bar.finish_and_clear();
    if purchases.is_empty() {
        bail!("{name}: no transactions after the header");
    }
    Ok(purchases)
}

/// A date as `YYYY-MM-DD` or `YYYYMMDD`, as days since 1970-01-01; the error says what is wrong.
pub fn parse_date(text: &str) -> Result<i32, String> {
    // Non-ASCII text is never a date; checking first keeps byte slicing in the parser safe.
    if !text.is_ascii() {
        return Err(format!(
            "'{text}' is not a date (expected YYYY-MM-DD or YYYYMMDD)"
        ));
    }
    lifetime::summary::parse_day(text)
        .map_err(|_| format!("'{text}' is not a date (expected YYYY-MM-DD or YYYYMMDD)"))
}

/// Days since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_day(day: i32) -> String {
    let date = time::Date::from_julian_day(day + UNIX_EPOCH_JULIAN_DAY);
    match date {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => day.to_string(),
    }
}

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// Today (UTC) as days since 1970-01-01.
pub fn today() -> i32 {
    time::OffsetDateTime::now_utc().date().to_julian_day() - UNIX_EPOCH_JULIAN_DAY
}

/// One line of `signalbox weber batch` output (the fields prediction uses; others are ignored).
#[derive(Deserialize)]
struct ProfileLine {
    user_id: String,
    weber_constant: f64,
    sensitivity_segment: weber::SensitivitySegment,
    calculation_confidence: f64,
    #[serde(default)]
    bias_ratio: Option<f64>,
}

/// Reads Weber profiles (JSON lines as `signalbox weber batch` writes them) keyed by user id,
/// which is joined with the transactions' customer_id.
pub fn read_profiles(path: &Path) -> anyhow::Result<HashMap<String, WeberFeatures>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let mut profiles = HashMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| anyhow!("{name}:{n}: cannot read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut de = serde_json::Deserializer::from_str(&line);
        let row: ProfileLine = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { "line".into() } else { field };
            anyhow!("{name}:{n}: {field}: {}", e.inner())
        })?;
        let at = |field: &str, why: &str| anyhow!("{name}:{n}: {field}: {why}");
        if !row.weber_constant.is_finite() || row.weber_constant < 0.0 {
            return Err(at("weber_constant", "must be a number >= 0"));
        }
        if !(0.0..=1.0).contains(&row.calculation_confidence) {
            return Err(at("calculation_confidence", "must be between 0 and 1"));
        }
        if row.bias_ratio.is_some_and(|b| !b.is_finite() || b < 0.0) {
            return Err(at("bias_ratio", "must be a number >= 0 or null"));
        }
        if profiles.contains_key(&row.user_id) {
            return Err(at("user_id", &format!("'{}' appears twice", row.user_id)));
        }
        profiles.insert(
            row.user_id,
            WeberFeatures {
                weber_constant: row.weber_constant,
                bias_ratio: row.bias_ratio,
                segment: row.sensitivity_segment,
                confidence: row.calculation_confidence,
            },
        );
    }
    Ok(profiles)
}

fn csv_kind(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => e.to_string(),
    }
}

/// A byte progress bar on stderr; indicatif draws nothing when stderr is not a terminal.
fn byte_bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{label} {{bar:40}} {{bytes}}/{{total_bytes}} eta {{eta}}"
    )) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn err(text: &str) -> String {
        let f = write(text);
        format!("{:#}", read_transactions(f.path(), 20_000).unwrap_err())
    }

    #[test]
    fn reads_both_date_forms_and_extra_columns() {
        let f = write("note,customer_id,date,amount\nx,a,1997-01-02,1.5\ny,b,19970103,0\n");
        let p = read_transactions(f.path(), 20_000).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].customer_id, "a");
        assert_eq!(p[1].day - p[0].day, 1);
        assert_eq!(p[1].amount, 0.0);
    }

    #[test]
    fn errors_name_line_and_field() {
        assert!(
            err("customer_id,date,amount\na,1997-01-01,1\na,1997-01-02,-3\n").ends_with(
                ":3: amount: must be a number >= 0 (send refunds as the net amount of the order)"
            )
        );
        assert!(err("customer_id,date,amount\na,1997-13-01,1\n").contains(":2: date: "));
        // Eight bytes with a two-byte character across byte 4: must not reach byte slicing.
        assert!(err("customer_id,date,amount\na,abc\u{e9}123,1\n").contains(":2: date: "));
        assert!(err("customer_id,date,amount\n,1997-01-01,1\n").contains(":2: customer_id: "));
        assert!(err("customer_id,date,amount\na,1997-01-01,NaN\n").contains(":2: amount: "));
        assert!(err("customer_id,date\na,1997-01-01\n").contains(":1: the header has no `amount`"));
        assert!(err("customer_id,date,amount\na,2030-01-01,1\n").contains("is after today"));
        assert!(err("").contains("empty"));
        assert!(err("customer_id,date,amount\n").contains("no transactions"));
    }

    #[test]
    fn odd_cells_are_refused_or_read_never_a_panic() {
        let amounts = [
            "1e400",
            "-0",
            "inf",
            "-inf",
            "",
            " ",
            "0x10",
            "1,5",
            "\u{e9}",
            "1e12",
            "1.0000001e12",
        ];
        for amount in amounts {
            let f = write(&format!(
                "customer_id,date,amount\na,1997-01-01,\"{amount}\"\n"
            ));
            match read_transactions(f.path(), 20_000) {
                Ok(p) => assert!(
                    p[0].amount.is_finite() && p[0].amount >= 0.0 && p[0].amount <= MAX_AMOUNT,
                    "{amount}"
                ),
                Err(e) => assert!(format!("{e:#}").contains(":2: amount: "), "{amount}: {e:#}"),
            }
        }
        for date in [
            "1997-1-01",
            "19970101 ",
            "\u{e9}\u{e9}\u{e9}\u{e9}",
            "99999999",
            "0000-00-00",
            "1997-02-29",
            "+1997-01-0",
        ] {
            let f = write(&format!("customer_id,date,amount\na,\"{date}\",1\n"));
            if let Err(e) = read_transactions(f.path(), 20_000) {
                assert!(format!("{e:#}").contains(":2: date: "), "{date}: {e:#}");
            }
        }
    }

    #[test]
    fn profiles_are_keyed_by_user_and_checked() {
        let f = write(concat!(
            r#"{"user_id":"a","weber_constant":0.9,"sensitivity_segment":"Highly_Sensitive","calculation_confidence":0.5,"review_count":3,"bias_ratio":null,"last_updated":""}"#,
            "\n"
        ));
        let p = read_profiles(f.path()).unwrap();
        assert_eq!(p["a"].segment, weber::SensitivitySegment::HighlySensitive);
        let bad = write(
            r#"{"user_id":"a","weber_constant":0.9,"sensitivity_segment":"Nope","calculation_confidence":0.5}"#,
        );
        let e = format!("{:#}", read_profiles(bad.path()).unwrap_err());
        assert!(e.contains(":1: sensitivity_segment: "), "{e}");
    }
}
