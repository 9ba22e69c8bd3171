//! The quick path against toml: whatever it reads, toml reads too, to the same raw config; and
//! it does read the files Portico is given (the shipped ones and the reload bench's shape).

use figment::providers::{Format, Toml};

use super::super::raw::RawConfig;
use super::parse;

/// What toml reads `text` to, as the quick path's result is compared with it.
fn by_toml(text: &str) -> Result<String, String> {
    Toml::from_str::<RawConfig>(text)
        .map(|raw| format!("{raw:#?}"))
        .map_err(|e| e.to_string())
}

/// Fails when the quick path reads `text` and toml does not, or reads it differently. Returns
/// whether the quick path read it.
#[track_caller]
fn agrees(text: &str) -> bool {
    let Some(quick) = parse(text) else {
        return false;
    };
    match by_toml(text) {
        Ok(expected) => assert_eq!(format!("{quick:#?}"), expected, "in:\n{text}"),
        Err(e) => panic!("the quick path read what toml refuses ({e}):\n{text}"),
    }
    true
}

/// The reload bench's shape, smaller, with the other forms of the subset mixed in.
fn sample() -> String {
    let mut t = String::from(
        "# a comment\n[admin]\nlisten = \"127.0.0.1:9900\"\n\n[runtime]\nworker_threads = 1\r\n\
         shutdown_grace = '2s' # trailing comment\n[log]\nlevel=\"info\"\naccess_log = false\n\n\
         [clusters.prod]\nnodes = [\n  \"10.0.0.1\", # first\n  { address = \"10.0.0.2\", weight = 2 },\n]\n",
    );
    for p in 0..40 {
        t.push_str(&format!(
            "[pools.pool-{p}]\nservers = [\"127.0.0.1:{}\", {{ address = \"127.0.0.1:{}\", drain = true }}]\n",
            30000 + p,
            31000 + p
        ));
        if p % 3 == 0 {
            t.push_str("health = { kind = \"tcp\", interval = \"5s\", rise = 3 }\n");
        }
        if p % 5 == 0 {
            t.push_str(&format!("[pools.pool-{p}.passive]\nfailures = -1\n"));
        }
    }
    t.push_str("[pools.from-cluster]\ncluster = \"prod\"\nnode_port = 30080\n\n");
    t.push_str("[listeners.web]\nbind = \"0.0.0.0:8080\"\nprotocol = \"http\"\n\n");
    for r in 0..100 {
        t.push_str(&format!(
            "[[listeners.web.routes]]\nhost = \"svc{}.example.com\"\npath_prefix = \"/api/v{}/\"\npool = \"pool-{}\"\n",
            r / 10,
            r % 10,
            r % 40
        ));
        if r % 7 == 0 {
            t.push_str("methods = [\"GET\", \"HEAD\"]\nretries = 0\n");
        }
        if r % 11 == 0 {
            t.push_str("[listeners.web.routes.headers]\nx-canary = \"1\"\n");
        }
    }
    t.push_str("\n[ listeners . db ]\nbind = \"0.0.0.0:5432\"\npool = \"pool-1\"\nmax_connections = 9223372036854775807\n");
    t
}

#[test]
fn the_shipped_configs_and_the_bench_shape_take_the_quick_path() {
    assert!(agrees(&sample()), "the sample left the subset");
    assert!(agrees(""));
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    for dir in [root.to_owned(), format!("{root}/examples")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(agrees(&text), "{} left the subset", path.display());
            }
        }
    }
}

#[test]
fn the_subset_reads_as_toml_does() {
    // Read by the quick path (and, as `agrees` checks, by toml to the same values).
    for text in [
        "[pools.a]\nservers = []\n",
        "[pools.a]\nservers = [ ]\n[pools.b]\nservers = [\"x\",]\n",
        "[pools.a]\nservers = [\"x\"]\n[pools]\n",
        "[pools.a.health]\nkind = \"tcp\"\n[pools.a]\nservers = [\"x\"]\n",
        "[[listeners.w.routes]]\npool = \"a\"\n[listeners.w]\nbind = \"x\"\n",
        "[listeners.w]\n[[listeners.w.routes]]\n[listeners.w.routes.headers]\na = \"b\"\n[[listeners.w.routes]]\n",
        "[listeners.w]\nmax_headers = -0\nmax_header_bytes = 0\n",
        "[log]\nlevel = 'C:\\x'\nformat = \"\t\u{e9}\"\n",
        "[pools.a]\nservers = [{address=\"x\"},{ address = \"y\" , weight = 1 }]\n",
    ] {
        assert!(agrees(text), "left the subset:\n{text}");
    }
    // Refused, by TOML or by the subset (toml decides then).
    for text in [
        "[log]\n[log]\n",
        "[log]\nlevel = \"a\"\nlevel = \"b\"\n",
        "[pools.a]\nservers = []\n[pools.a.servers]\n",
        "[pools.a]\nhealth = { kind = \"tcp\" }\n[pools.a.health]\n",
        "[pools.a]\nhealth = {}\n[pools.a.health.x]\n",
        "[[pools]]\n",
        "[pools.a]\n[[pools.a]]\n",
        "[listeners.w]\nroutes = []\n[[listeners.w.routes]]\n",
        "[[listeners.w.routes]]\n[listeners.w.routes]\n",
        "[log]\nlevel = \"a\\tb\"\n",
        "[log]\nlevel = \"\"\"x\"\"\"\n",
        "[log]\nlevel = '''x'''\n",
        "[log]\nlevel = \"a\" \"b\"\n",
        "[log]\naccess_log = true# c\n",
        "[log]\naccess_log = truex\n",
        "[runtime]\nworker_threads = 01\n",
        "[runtime]\nworker_threads = +1\n",
        "[runtime]\nworker_threads = 1_0\n",
        "[runtime]\nworker_threads = 1.0\n",
        "[runtime]\nworker_threads = 0x1\n",
        "[runtime]\nworker_threads = 9223372036854775808\n",
        "[runtime]\nshutdown_grace = 1979-05-27\n",
        "[pools.a]\nservers = [\"x\",,]\n",
        "[pools.a]\nservers = [,]\n",
        "[pools.a]\nservers = [{ address = \"x\", }]\n",
        "[pools.a]\nservers = [{ address = \"x\"\n}]\n",
        "[pools.a]\nhealth = { kind = \"tcp\", kind = \"http\" }\n",
        "[pools.a]\nhealth.kind = \"tcp\"\n",
        "[pools.\"a\"]\n",
        "\"log\" = {}\n",
        "[log]\r[admin]\n",
        "[log] # \u{7f}\n",
        "[log]\nlevel = \"\u{1}\"\n",
        "[log]\nlevel =\n",
        "[log\n",
        "[log]]\n",
        "[[log]\n",
        "[]\n",
        "[ [listeners.w.routes] ]\n",
        "\u{feff}[log]\n",
        "[log]\nunknown = 1\n",
        "[log]\nlevel = 1\n",
        "[runtime]\nworker_threads = \"1\"\n",
    ] {
        assert!(
            !agrees(text),
            "read, though outside TOML or the subset:\n{text}"
        );
    }
}

/// The reader's own view of a text: its tree, before serde (whose errors would hide a rule
/// the reader failed to apply).
fn reads(text: &str) -> bool {
    super::Parser { text, pos: 0 }.document().is_some()
}

#[test]
fn toml_rules_are_applied_by_the_reader_itself() {
    for text in [
        "[a]\n[a]\n",
        "a = 1\na = 2\n",
        "[a]\nx = {}\n[a.x.y]\n",
        "[a]\nx = { k = 1 }\n[a.x]\n",
        "[[a]]\n[a]\n",
        "[a]\n[[a]]\n",
        "a = []\n[[a]]\n",
        "a = []\n[a.b]\n",
        "a = 1\n[a.b]\n",
        "[a.b]\n[a]\nb = 1\n",
        "x = 1979-05-27\n",
        "x = { a = 1, a = 2 }\n",
    ] {
        assert!(!reads(text), "read, though TOML forbids it:\n{text}");
    }
    for text in [
        "[a.b]\n[a]\nc = 1\n",
        "[[a]]\n[a.b]\n[[a]]\n[a.b]\n",
        "a = [[1], []]\n",
    ] {
        assert!(reads(text), "refused, though TOML allows it:\n{text}");
    }
}

#[test]
fn nesting_and_header_paths_are_bounded() {
    let nested = |n: usize| format!("a = {}1{}\n", "[".repeat(n), "]".repeat(n));
    assert!(reads(&nested(super::MAX_DEPTH)));
    assert!(!reads(&nested(super::MAX_DEPTH + 1)));
    let header = |n: usize| format!("[{}]\n", vec!["k"; n].join("."));
    assert!(reads(&header(super::MAX_HEADER_KEYS)));
    assert!(!reads(&header(super::MAX_HEADER_KEYS + 1)));
    // Far beyond both: refused at once, not built and freed by recursion.
    assert!(!reads(&header(100_000)));
    assert!(!reads(&nested(100_000)));
}

/// A small xorshift generator: the same mutations in every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Random edits of a valid file (bytes that matter to TOML inserted, deleted, replaced; lines
/// moved or repeated): whenever the quick path still reads the result, toml must read it to the
/// same raw config.
#[test]
fn mutated_files_read_as_toml_reads_them() {
    const ROUNDS: usize = 4000;
    const ALPHABET: &[u8] = b"[]{}=,.\"'#\n\r\t -_01a\\+:e";
    // The top of the sample and its first routes: every form of the subset, in 90 lines.
    let sample = sample();
    let lines: Vec<&str> = sample.split_inclusive('\n').collect();
    let routes = lines.iter().position(|l| l.starts_with("[[")).unwrap();
    let base = [&lines[..50], &lines[routes - 4..routes + 36]]
        .concat()
        .concat();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut read = 0;
    for _ in 0..ROUNDS {
        let mut text = base.clone().into_bytes();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(text.len());
            match rng.below(5) {
                0 => {
                    text.remove(at);
                }
                1 => text.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                2 => text[at] = ALPHABET[rng.below(ALPHABET.len())],
                _ => {
                    let mut ls: Vec<String> = String::from_utf8_lossy(&text)
                        .split_inclusive('\n')
                        .map(str::to_owned)
                        .collect();
                    let (a, b) = (rng.below(ls.len()), rng.below(ls.len()));
                    let line = ls[a].clone();
                    ls.insert(b, line);
                    text = ls.concat().into_bytes();
                }
            }
        }
        let text = String::from_utf8_lossy(&text);
        read += usize::from(agrees(&text));
    }
    // Many edits keep a file that still deserializes (a value's text changed, a line repeated
    // in an array or moved to another table): they exercise the comparison, not only the
    // refusals. About one in ten does.
    assert!(
        read > ROUNDS / 20,
        "only {read} of {ROUNDS} mutants were read"
    );
}
