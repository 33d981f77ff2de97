//! Inputs made from bytes: a structure-aware generator of AdmissionReviews and selectors (every
//! choice read from an `arbitrary::Unstructured`), and mutators over the review fixtures, at the
//! JSON level and at the byte level. The same bytes always make the same input.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Value, json};

/// Label keys: real ones, and each way a qualified name can be wrong.
pub const KEYS: &[&str] = &[
    "topology.liqo.io/region",
    "liqo.io/remote-cluster-id",
    "kubernetes.io/hostname",
    "region",
    "gpu",
    "cores",
    "x.y_z-1",
    "",
    "/",
    "a/",
    "/a",
    "a/b/c",
    "bad key",
    "-a",
    "a-",
    "_a",
    "a.",
    "A.example.com/x",
    "example..com/x",
    "-example.com/x",
    "example.com-/x",
    "é",
    "a\u{0}b",
];

pub const OPERATORS: &[&str] =
    &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "", "in", "Equals", "NOTIN", "In ", "Gt\u{0}"];

/// Label values, and integers around i64's edges for Gt/Lt.
pub const VALUES: &[&str] = &[
    "eu-west",
    "us",
    "8",
    "16",
    "0",
    "-1",
    "+5",
    " 1",
    "0x10",
    "1e3",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "",
    "a b",
    "-a",
    "a-",
    "A_b.c",
    "a/b",
    "é",
    "\"quoted\"",
];

/// Namespace and object names, around the 26/27 and 63/64 character edges.
pub const NAMES: &[&str] = &[
    "offloading",
    "my-offloading",
    "web",
    "default",
    "kube-system",
    "a",
    "",
    "Web",
    "-web",
    "web-",
    "we_b",
    "we.b",
    "payments-processing-europe-1",
    "aaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "vk-a",
    "liqo-vk.example.com",
];

pub const CLUSTER_IDS: &[&str] = &[
    "b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a",
    "c1",
    "",
    "Not-A-Label",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// Pieces strings are built from: every class the name rules tell apart, and JSON's hard cases.
const PIECES: &[&str] = &[
    "a", "z", "A", "Z", "0", "9", "-", "_", ".", "/", " ", "é", "\u{0}", "\"", "\\", "\n", "ß", "\u{202e}",
    "💥", "\u{fffd}", "liqo", "io",
];

/// A string: mostly from `dict`, else built from pieces, sized at a length limit, or arbitrary.
pub fn string(u: &mut Unstructured<'_>, dict: &[&str]) -> Result<String> {
    Ok(match u.int_in_range(0u8..=9)? {
        0..=5 => (*u.choose(dict)?).to_owned(),
        6 | 7 => {
            let n = u.int_in_range(1usize..=12)?;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(u.choose(PIECES)?);
            }
            s
        }
        8 => {
            // Just under, at and over the limits the rules count (63, 253).
            let len = *u.choose(&[62usize, 63, 64, 252, 253, 254, 300])?;
            let fill = *u.choose(&["a", "a.", "A", "-", "0"])?;
            let mut s = fill.repeat(len.div_ceil(fill.len()));
            s.truncate(len);
            if u.ratio(1u8, 2)? {
                s.replace_range(..1, "b");
            }
            s
        }
        _ => u.arbitrary::<String>()?,
    })
}

/// How many copies a blown-up list gets: from the largest list judged item by item to more than
/// a 3 MiB review holds.
fn huge_len(u: &mut Unstructured<'_>) -> Result<usize> {
    // 32 and 256 sit at the `Too many` limits (terms, requirements; values): the largest
    // lists that are judged value by value.
    Ok(*u.choose(&[32usize, 256, 300, 1_000, 5_000, 20_000, 100_000, 300_000])?)
}

/// A clusterSelector (`nodeSelectorTerms` always present: it is what the selector rules judge).
pub fn selector(u: &mut Unstructured<'_>, max_terms: usize) -> Result<Value> {
    let mut terms = Vec::new();
    for _ in 0..u.int_in_range(0..=max_terms)? {
        let mut term = Map::new();
        if u.ratio(4u8, 5)? {
            let mut exprs = Vec::new();
            for _ in 0..u.int_in_range(0usize..=4)? {
                let mut e = Map::new();
                e.insert("key".into(), string(u, KEYS)?.into());
                e.insert("operator".into(), string(u, OPERATORS)?.into());
                if u.ratio(3u8, 4)? {
                    let mut values = Vec::new();
                    for _ in 0..u.int_in_range(0usize..=4)? {
                        values.push(Value::from(string(u, VALUES)?));
                    }
                    e.insert("values".into(), values.into());
                }
                exprs.push(Value::Object(e));
            }
            term.insert("matchExpressions".into(), exprs.into());
        }
        if u.ratio(1u8, 4)? {
            let mut fields = Vec::new();
            for _ in 0..u.int_in_range(0usize..=2)? {
                let key = if u.ratio(3u8, 4)? { "metadata.name".to_owned() } else { string(u, KEYS)? };
                let mut values = Vec::new();
                for _ in 0..u.int_in_range(0usize..=2)? {
                    values.push(Value::from(string(u, NAMES)?));
                }
                fields.push(json!({ "key": key, "operator": string(u, OPERATORS)?, "values": values }));
            }
            term.insert("matchFields".into(), fields.into());
        }
        terms.push(Value::Object(term));
    }
    Ok(json!({ "nodeSelectorTerms": terms }))
}

/// Makes one list of the selector huge: the hostile review: one list of thousands of values.
fn blow_up(u: &mut Unstructured<'_>, selector: &mut Value) -> Result<()> {
    let n = huge_len(u)?;
    let value = Value::from(*u.choose(&["a b", "eu-west", "-x", ""])?);
    let expr = json!({ "key": "topology.liqo.io/region", "operator": "In", "values": vec![value; n] });
    let target = u.int_in_range(0u8..=2)?;
    let terms = &mut selector["nodeSelectorTerms"];
    match target {
        // One expression with n values.
        0 => *terms = json!([{ "matchExpressions": [expr] }]),
        // n expressions, each with a bad key.
        1 => {
            let e = json!({ "key": "bad key", "operator": "Exists" });
            *terms = json!([{ "matchExpressions": vec![e; n] }]);
        }
        // n terms.
        _ => {
            *terms =
                Value::Array(vec![json!({ "matchExpressions": [{"key": "-", "operator": "Equals"}] }); n])
        }
    }
    Ok(())
}

fn object(u: &mut Unstructured<'_>, huge: bool) -> Result<Value> {
    let mut metadata = Map::new();
    if u.ratio(9u8, 10)? {
        metadata.insert("name".into(), string(u, NAMES)?.into());
    }
    if u.ratio(4u8, 5)? {
        metadata.insert("namespace".into(), string(u, NAMES)?.into());
    }
    match u.int_in_range(0u8..=3)? {
        0 => {}
        1 => {
            metadata.insert("annotations".into(), Value::Null);
        }
        2 => {
            metadata.insert("annotations".into(), json!({}));
        }
        _ => {
            let v = string(u, &["true", "false", "Invalid Cluster Selector : x"])?;
            metadata.insert("annotations".into(), json!({ "liqo.io/scheduling-enabled": v, "a": "b" }));
        }
    }
    let mut spec = Map::new();
    if u.ratio(3u8, 4)? {
        let s = string(u, &["DefaultName", "EnforceSameName", "SelectedName", "Other", ""])?;
        spec.insert("namespaceMappingStrategy".into(), s.into());
    }
    if u.ratio(3u8, 4)? {
        let s = string(u, &["LocalAndRemote", "Local", "Remote", "Nowhere"])?;
        spec.insert("podOffloadingStrategy".into(), s.into());
    }
    if u.ratio(1u8, 3)? {
        spec.insert("remoteNamespaceName".into(), string(u, NAMES)?.into());
    }
    if u.ratio(4u8, 5)? {
        let mut sel = selector(u, 3)?;
        if huge {
            blow_up(u, &mut sel)?;
        }
        spec.insert("clusterSelector".into(), sel);
    }
    let version = *u.choose(&["v1alpha1", "v1beta1"])?;
    Ok(json!({
        "apiVersion": format!("offloading.liqo.io/{version}"),
        "kind": "NamespaceOffloading",
        "metadata": metadata,
        "spec": spec,
    }))
}

/// A whole AdmissionReview, mostly well formed, its object sometimes huge.
pub fn review(u: &mut Unstructured<'_>) -> Result<Value> {
    // Rare: each blown-up review costs as much as thousands of ordinary ones.
    let huge = u.ratio(1u32, 20_000)?;
    let group = *u.choose(&["offloading.liqo.io", "offloading.liqo.io", "apps", ""])?;
    let version = *u.choose(&["v1alpha1", "v1beta1", "v1"])?;
    let resource = *u.choose(&["namespaceoffloadings", "namespaceoffloadings", "namespacemaps"])?;
    let operation = *u.choose(&[
        "CREATE", "CREATE", "CREATE", "UPDATE", "UPDATE", "UPDATE", "DELETE", "CONNECT", "PATCH",
    ])?;
    let mut request = json!({
        "uid": string(u, &["7a8b0c1d-0000-4000-8000-000000000001", "u", ""])?,
        "kind": { "group": group, "version": version, "kind": "NamespaceOffloading" },
        "resource": { "group": group, "version": version, "resource": resource },
        "operation": operation,
        "userInfo": { "username": "kubernetes-admin" },
        "dryRun": u.arbitrary::<bool>()?,
    });
    if u.ratio(1u8, 10)? {
        request["subResource"] = string(u, &["status", ""])?.into();
    }
    if u.ratio(4u8, 5)? {
        request["namespace"] = string(u, NAMES)?.into();
    }
    if u.ratio(9u8, 10)? {
        request["object"] = object(u, huge)?;
    }
    if operation == "UPDATE" || u.ratio(1u8, 5)? {
        request["oldObject"] = object(u, false)?;
    }
    let api_version =
        *u.choose(&["admission.k8s.io/v1", "admission.k8s.io/v1", "admission.k8s.io/v1beta1"])?;
    Ok(json!({ "apiVersion": api_version, "kind": "AdmissionReview", "request": request }))
}

/// A value to put where another was: each JSON type, edge numbers, long strings.
fn replacement(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0u8..=11)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => json!(u.arbitrary::<i64>()?),
        3 => json!(u.arbitrary::<u64>()?),
        4 => json!(u.arbitrary::<f64>()?),
        5 => json!([]),
        6 => json!({}),
        7 => "x".repeat(*u.choose(&[63usize, 64, 254, 10_000])?).into(),
        8 => json!([string(u, VALUES)?]),
        9 => json!({ string(u, KEYS)?: string(u, VALUES)? }),
        10 => selector(u, 2)?,
        _ => string(u, VALUES)?.into(),
    })
}

/// Walks down from `v` to a random node and changes it: replace, remove, repeat, add a key.
/// Near the root it nearly always goes deeper: a review without its envelope only tests serde.
fn mutate_value(u: &mut Unstructured<'_>, v: &mut Value, depth: u8) -> Result<()> {
    let deeper = match depth {
        0 => true,
        1 | 2 => u.ratio(19u8, 20)?,
        _ => u.ratio(3u8, 4)?,
    };
    match v {
        Value::Object(m) if !m.is_empty() && deeper => {
            let i = u.choose_index(m.len())?;
            let Some(key) = m.keys().nth(i).cloned() else { return Ok(()) };
            match u.int_in_range(0u8..=9)? {
                0 => {
                    m.remove(&key);
                }
                1 => {
                    let k = string(u, &["uid", "object", "spec", "metadata", "values", "patch", ""])?;
                    m.insert(k, replacement(u)?);
                }
                _ => {
                    if let Some(child) = m.get_mut(&key) {
                        mutate_value(u, child, depth + 1)?;
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() && deeper => {
            let i = u.choose_index(a.len())?;
            match u.int_in_range(0u8..=9)? {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let n = u.int_in_range(1usize..=64)?;
                    let e = a[i].clone();
                    a.extend(std::iter::repeat_n(e, n));
                }
                _ => mutate_value(u, &mut a[i], depth + 1)?,
            }
        }
        _ => *v = replacement(u)?,
    }
    Ok(())
}

/// 1 to 8 changes at random places of a JSON document, mostly one or two: each is likely to break
/// the envelope, and a broken envelope only reaches serde.
pub fn mutate_json(u: &mut Unstructured<'_>, v: &mut Value) -> Result<()> {
    let n = *u.choose(&[1u8, 1, 1, 1, 2, 2, 3, 8])?;
    // Mostly inside the object under review: a broken envelope is refused by serde alone.
    let v = match v.pointer_mut("/request/object") {
        Some(object) if object.is_object() && u.ratio(2u8, 3)? => object,
        _ => v,
    };
    // Out of bytes, every choice is its first: the same change every time (the root's first key
    // removed), which only tests serde.
    for _ in 0..n {
        if u.is_empty() {
            break;
        }
        mutate_value(u, v, 0)?;
    }
    Ok(())
}

/// Tokens that break or bend JSON.
const TOKENS: &[&str] = &[
    "null",
    "true",
    "{}",
    "[]",
    "\"\"",
    "1e999",
    "-0",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "99999999999999999999",
    "\"uid\":",
    ",",
    ":",
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    "\u{feff}",
    "\"\\uDFFF\"",
];

/// 1 to 8 byte-level changes: flips, token insertions, cut and repeated ranges, truncation.
pub fn mutate_bytes(u: &mut Unstructured<'_>, b: &mut Vec<u8>) -> Result<()> {
    for _ in 0..u.int_in_range(1u8..=8)? {
        if u.is_empty() {
            break;
        }
        if b.is_empty() {
            b.extend_from_slice(u.choose(TOKENS)?.as_bytes());
            continue;
        }
        let at = u.choose_index(b.len())?;
        match u.int_in_range(0u8..=5)? {
            0 => b[at] ^= 1 << u.int_in_range(0u8..=7)?,
            1 => b[at] = *u.choose(b"\"{}[],:\\\x00\xff0-e.")?,
            2 => {
                let t = u.choose(TOKENS)?;
                b.splice(at..at, t.bytes());
            }
            3 => {
                let end = (at + u.int_in_range(1usize..=64)?).min(b.len());
                b.drain(at..end);
            }
            4 => {
                let end = (at + u.int_in_range(1usize..=64)?).min(b.len());
                let chunk = b[at..end].to_vec();
                b.splice(at..at, chunk);
            }
            _ => b.truncate(at),
        }
    }
    Ok(())
}
