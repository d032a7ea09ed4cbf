//! A busy web console as psmgate's in-page recorder reports it: rrweb batches of one page, as
//! the JSON the recorder posts to `/__psmgate/events`.
//!
//! The full snapshot is an instances list of about 1,000 elements (header with service links,
//! side menu, a 64-row table, an access-key panel and a sign-in form) with text nodes,
//! attributes and a style sheet. Each incremental batch is what a busy console produces in the
//! recorder's one-second flush interval: one mutation adding a 21-node table row (elements and
//! their text) and removing the row added ten batches earlier, changing 5 texts and one class,
//! 10 mouse positions (two events, as rrweb samples them), 2 inputs and 1 scroll.
//!
//! Secrets are planted as a browser that did not mask them would send them (the proxy does not
//! trust the browser's masking): the text of the `.secret` panel and changes to it, the value of
//! the password input and input into it, and an access key id (`AKIA…`) in visible text and an
//! attribute. A visible marker is planted too, so that a search of the recording for the
//! secrets can be shown to find what is there.

use serde_json::{json, Value};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

/// The mask selector the bench gateway's web target has.
pub const MASK_SELECTOR: &str = ".secret";
/// The mask pattern the bench gateway's web target has.
pub const MASK_PATTERN: &str = "AKIA[0-9A-Z]{16}";

/// Rows of the instances table in the full snapshot.
const ROWS: usize = 64;
/// Table rows added by incremental batches that stay before they are removed again.
const KEPT_ROWS: usize = 10;

/// A random `u64` (std's per-process random hasher keys).
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

/// `n` random characters of `A-Z 0-9`.
fn random_upper(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut out = String::with_capacity(n);
    let mut x = random_u64();
    for i in 0..n {
        if i % 8 == 0 {
            x = random_u64();
        }
        out.push(char::from(ALPHABET[(x % ALPHABET.len() as u64) as usize]));
        x /= ALPHABET.len() as u64;
    }
    out
}

/// The planted strings, random per run.
#[derive(Clone, Debug)]
pub struct Secrets {
    /// Text inside the `.secret` panel (a secret access key).
    pub masked_text: String,
    /// The password input's value and what is typed into it.
    pub password: String,
    /// An access key id the mask pattern matches, in visible text.
    pub access_key: String,
    /// Visible text that must be recorded.
    pub visible: String,
}

impl Secrets {
    /// New random strings.
    pub fn new() -> Secrets {
        Secrets {
            masked_text: format!("wJalrXUtnFEMI{}bPxRfiCY", random_upper(16)),
            password: format!("Pw-{}-hunter2", random_upper(12)),
            access_key: format!("AKIA{}", random_upper(16)),
            visible: format!("visible-{}", random_upper(12).to_ascii_lowercase()),
        }
    }

    /// The strings that must never be stored.
    pub fn hidden(&self) -> [(&'static str, &str); 3] {
        [
            ("the `.secret` panel's text", &self.masked_text),
            ("the password", &self.password),
            ("the access key id", &self.access_key),
        ]
    }
}

/// Builds serialized rrweb nodes with ids in document order, as rrweb numbers them.
struct Tree {
    next: i64,
    /// Ids of nodes the incremental batches refer to, by name.
    marks: HashMap<&'static str, i64>,
    /// Ids of text nodes whose text changes.
    status_texts: Vec<i64>,
}

impl Tree {
    fn id(&mut self) -> i64 {
        let id = self.next;
        self.next += 1;
        id
    }

    fn el(
        &mut self,
        tag: &str,
        attributes: Value,
        children: impl FnOnce(&mut Tree) -> Vec<Value>,
    ) -> Value {
        let id = self.id();
        let children = children(self);
        let mut node = json!({"type": 2, "tagName": tag, "attributes": attributes, "id": id});
        node["childNodes"] = Value::Array(children);
        node
    }

    /// An element with one text node.
    fn el_text(&mut self, tag: &str, attributes: Value, text: &str) -> Value {
        self.el(tag, attributes, |t| vec![t.text(text)])
    }

    fn text(&mut self, text: &str) -> Value {
        json!({"type": 3, "textContent": text, "id": self.id()})
    }

    /// Notes the id of `node` under `name`.
    fn mark(&mut self, name: &'static str, node: &Value) {
        if let Some(id) = node["id"].as_i64() {
            self.marks.insert(name, id);
        }
    }
}

/// The page's style sheet (a text node rrweb marks `isStyle`).
const CSS: &str = concat!(
    "body{margin:0;font:14px/1.4 system-ui,sans-serif;color:#16191f;background:#f2f3f3}",
    ".topbar{display:flex;align-items:center;height:40px;padding:0 16px;background:#232f3e}",
    ".topbar a{color:#fff;text-decoration:none;margin-right:12px}",
    ".services ul{display:flex;list-style:none;margin:0;padding:0}.layout{display:flex}",
    ".sidebar{width:240px;background:#fff;border-right:1px solid #d5dbdb;min-height:100vh}",
    ".sidebar li{padding:4px 16px}",
    ".sidebar li.active{font-weight:700;border-left:3px solid #ec7211}",
    ".content{flex:1;padding:16px 24px}.breadcrumbs a{color:#0073bb}",
    ".toolbar button{margin-right:8px;padding:4px 12px;border:1px solid #545b64;border-radius:2px}",
    ".grid{width:100%;border-collapse:collapse;background:#fff}",
    ".grid th,.grid td{padding:6px 8px;border-bottom:1px solid #eaeded;text-align:left}",
    ".grid tr.selected{background:#f1faff}.status-badge{padding:0 6px;border-radius:8px}",
    ".status-running{color:#1d8102}.status-stopped{color:#d13212}",
    ".panel{margin-top:16px;padding:16px;background:#fff;border:1px solid #d5dbdb}",
    ".panel dt{font-weight:700}footer{padding:8px 24px;color:#687078}",
    "form.login{margin-top:16px;display:grid;grid-template-columns:120px 240px;gap:8px}",
);

/// The services in the top bar.
const SERVICES: [&str; 20] = [
    "EC2",
    "S3",
    "IAM",
    "RDS",
    "Lambda",
    "CloudWatch",
    "VPC",
    "Route 53",
    "ECS",
    "EKS",
    "DynamoDB",
    "SNS",
    "SQS",
    "CloudFront",
    "KMS",
    "Secrets Manager",
    "CloudTrail",
    "Config",
    "Systems Manager",
    "Billing",
];

const STATES: [&str; 4] = ["running", "stopped", "pending", "stopping"];
const TYPES: [&str; 4] = ["t3.medium", "m5.large", "c6g.xlarge", "r6i.2xlarge"];

/// An element without children.
fn void(t: &mut Tree, tag: &str, attributes: Value) -> Value {
    t.el(tag, attributes, |_| Vec::new())
}

/// One table row: `tr` with 8 cells (13 elements and 8 text nodes), as in the snapshot and as the
/// incremental batches add them.
fn row(t: &mut Tree, n: usize, visible: &str) -> Value {
    let state = STATES[n % STATES.len()];
    let id = format!("i-{n:017x}");
    let name = format!("{visible} web-{n}");
    t.el("tr", json!({"class": "row", "data-row-id": id}), |t| {
        let name_cell = t.el("td", json!({"class": "cell-name"}), |t| {
            vec![t.el_text("span", json!({"class": "name", "title": name}), &name)]
        });
        let id_cell = t.el("td", json!({}), |t| vec![t.el_text("code", json!({}), &id)]);
        let type_cell = t.el_text("td", json!({}), TYPES[n % TYPES.len()]);
        let state_cell = t.el("td", json!({}), |t| {
            let class = format!("status-badge status-{state}");
            let badge = t.el_text("span", json!({ "class": class }), state);
            if let Some(text) = badge["childNodes"][0]["id"].as_i64() {
                t.status_texts.push(text);
            }
            vec![badge]
        });
        let zone = format!("eu-west-1{}", ["a", "b", "c"][n % 3]);
        let ip = format!("10.0.{}.{}", n / 250, n % 250 + 4);
        let launched = format!("2024-05-{:02}T08:{:02}:00Z", n % 28 + 1, n % 60);
        vec![
            name_cell,
            id_cell,
            type_cell,
            state_cell,
            t.el_text("td", json!({}), &zone),
            t.el_text("td", json!({}), &ip),
            t.el_text("td", json!({}), &launched),
            t.el("td", json!({}), |t| {
                let href = format!("/ec2/connect/{id}");
                vec![t.el_text("a", json!({"href": href, "class": "action"}), "Connect")]
            }),
        ]
    })
}

fn head(t: &mut Tree) -> Value {
    t.el("head", json!({}), |t| {
        vec![
            void(t, "meta", json!({"charset": "utf-8"})),
            void(
                t,
                "meta",
                json!({"name": "viewport", "content": "width=device-width, initial-scale=1"}),
            ),
            t.el_text("title", json!({}), "Instances | EC2 | Console"),
            t.el("style", json!({}), |t| {
                let id = t.id();
                vec![json!({"type": 3, "textContent": CSS, "isStyle": true, "id": id})]
            }),
            void(
                t,
                "link",
                json!({"rel": "stylesheet", "href": "/static/console.css"}),
            ),
        ]
    })
}

/// The top bar: service links, the account (its title names the access key id) and search.
fn topbar(t: &mut Tree, s: &Secrets) -> Value {
    t.el("header", json!({"class": "topbar", "id": "topbar"}), |t| {
        let brand = t.el_text("a", json!({"class": "brand", "href": "/home"}), "Console");
        let nav = t.el(
            "nav",
            json!({"class": "services", "aria-label": "Services"}),
            |t| {
                vec![t.el("ul", json!({}), |t| {
                    SERVICES
                        .iter()
                        .map(|name| {
                            let slug = name.to_ascii_lowercase().replace(' ', "-");
                            let attrs =
                                json!({"href": format!("/{slug}/home"), "data-testid": slug});
                            t.el("li", json!({}), |t| vec![t.el_text("a", attrs, name)])
                        })
                        .collect()
                })]
            },
        );
        let account = t.el("div", json!({"class": "account"}), |t| {
            let title = format!("signed in with key {}", s.access_key);
            vec![t.el_text("span", json!({ "title": title }), "alice @ 1234-5678-9012")]
        });
        let search = void(
            t,
            "input",
            json!({"id": "search", "type": "search", "placeholder": "Search", "value": ""}),
        );
        t.mark("search", &search);
        vec![brand, nav, account, search]
    })
}

fn sidebar(t: &mut Tree) -> Value {
    t.el("aside", json!({"class": "sidebar"}), |t| {
        vec![t.el("ul", json!({"role": "menu"}), |t| {
            (0..40)
                .map(|i| {
                    let class = if i == 3 {
                        "menu-item active"
                    } else {
                        "menu-item"
                    };
                    t.el("li", json!({ "class": class }), |t| {
                        let href = format!("/ec2/section/{i}");
                        vec![t.el_text("a", json!({ "href": href }), &format!("Section {i}"))]
                    })
                })
                .collect()
        })]
    })
}

/// The instances table; marks its body.
fn table(t: &mut Tree, s: &Secrets) -> Value {
    t.el("table", json!({"class": "grid", "id": "instances"}), |t| {
        let head = t.el("thead", json!({}), |t| {
            vec![t.el("tr", json!({}), |t| {
                [
                    "Name",
                    "Instance ID",
                    "Type",
                    "State",
                    "Zone",
                    "Private IP",
                    "Launched",
                    "",
                ]
                .iter()
                .map(|h| t.el_text("th", json!({"scope": "col"}), h))
                .collect()
            })]
        });
        let body = t.el("tbody", json!({"id": "rows"}), |t| {
            (0..ROWS).map(|n| row(t, n, &s.visible)).collect()
        });
        t.mark("tbody", &body);
        vec![head, body]
    })
}

/// The access-key panel the mask selector matches; marks the secret's text node.
fn panel(t: &mut Tree, s: &Secrets) -> Value {
    t.el(
        "section",
        json!({"class": "panel secret", "id": "access-keys"}),
        |t| {
            let title = t.el_text("h2", json!({}), "Access keys");
            let list = t.el("dl", json!({}), |t| {
                let mut out = vec![
                    t.el_text("dt", json!({}), "Access key ID"),
                    t.el_text("dd", json!({}), &s.access_key),
                    t.el_text("dt", json!({}), "Secret access key"),
                ];
                let secret = t.el_text("dd", json!({}), &s.masked_text);
                t.mark("secret_text", &secret["childNodes"][0]);
                out.push(secret);
                out.push(t.el_text("dt", json!({}), "Created"));
                out.push(t.el_text("dd", json!({}), "2024-05-01"));
                out
            });
            vec![title, list]
        },
    )
}

/// The sign-in form with a filled-in password input; marks the input.
fn form(t: &mut Tree, s: &Secrets) -> Value {
    let attrs =
        json!({"class": "login", "id": "login-form", "action": "/signin", "method": "post"});
    t.el("form", attrs, |t| {
        let user = t.el_text("label", json!({"for": "user"}), "User");
        let user_input = void(
            t,
            "input",
            json!({"type": "text", "name": "user", "id": "user", "value": "alice"}),
        );
        let label = t.el_text("label", json!({"for": "password"}), "Password");
        let password = void(
            t,
            "input",
            json!({"type": "password", "name": "password", "value": s.password}),
        );
        t.mark("password", &password);
        let submit = t.el_text("button", json!({"type": "submit"}), "Sign in");
        vec![user, user_input, label, password, submit]
    })
}

/// The main column; marks it (it scrolls) and the texts that change.
fn content(t: &mut Tree, s: &Secrets) -> Value {
    let main = t.el("main", json!({"id": "main", "class": "content"}), |t| {
        let crumbs = t.el("div", json!({"class": "breadcrumbs"}), |t| {
            ["EC2", "Instances", "All"]
                .iter()
                .map(|c| t.el_text("a", json!({"href": "#"}), c))
                .collect()
        });
        let title = t.el_text("h1", json!({}), &format!("Instances ({ROWS})"));
        let toolbar = t.el("div", json!({"class": "toolbar"}), |t| {
            ["Launch", "Start", "Stop", "Reboot", "Terminate", "Refresh"]
                .iter()
                .map(|b| t.el_text("button", json!({"type": "button"}), b))
                .collect()
        });
        let caller = t.el("p", json!({"class": "last-caller"}), |t| {
            let text = t.text(&format!("Last API call by {} at 08:00:00", s.access_key));
            t.mark("caller_text", &text);
            vec![text]
        });
        vec![
            crumbs,
            title,
            toolbar,
            caller,
            table(t, s),
            panel(t, s),
            form(t, s),
        ]
    });
    t.mark("main", &main);
    main
}

fn footer(t: &mut Tree) -> Value {
    t.el("footer", json!({}), |t| {
        let legal = t.el_text("p", json!({}), "© 2024 Console. Privacy | Terms | Cookies");
        let clock = t.el("span", json!({"id": "clock"}), |t| {
            let text = t.text("08:00:00");
            t.mark("clock_text", &text);
            vec![text]
        });
        vec![legal, clock]
    })
}

/// The full snapshot's document node; marks the ids the incremental batches use.
fn document(t: &mut Tree, s: &Secrets) -> Value {
    let doc_id = t.id();
    let doctype = json!({"type": 1, "name": "html", "publicId": "", "systemId": "", "id": t.id()});
    let html = t.el("html", json!({"lang": "en"}), |t| {
        let head = head(t);
        let newline = t.text("\n");
        let body = t.el("body", json!({"class": "console theme-light"}), |t| {
            let top = topbar(t, s);
            let layout = t.el("div", json!({"class": "layout"}), |t| {
                vec![sidebar(t), content(t, s)]
            });
            vec![top, layout, footer(t)]
        });
        vec![head, newline, body]
    });
    json!({"type": 0, "childNodes": [doctype, html], "compatMode": "CSS1Compat", "id": doc_id})
}

/// Counts the element nodes below (and including) `node`.
fn elements(node: &Value) -> usize {
    let own = usize::from(node["type"] == 2);
    own + node["childNodes"]
        .as_array()
        .map_or(0, |c| c.iter().map(elements).sum())
}

/// One page of the console and its recorder's batches.
pub struct ConsolePage {
    page: String,
    url: String,
    secrets: Secrets,
    /// The snapshot's events (Meta and FullSnapshot), JSON.
    snapshot_events: Vec<Value>,
    /// Elements in the snapshot.
    pub snapshot_elements: usize,
    tree: Tree,
    seq: u64,
    batch: u64,
    added: VecDeque<i64>,
    clock: u64,
}

/// Milliseconds since the epoch the page's events start at.
const T0: u64 = 1_716_000_000_000;

impl ConsolePage {
    /// The page `page` (the id psmgate gave it) at `url`.
    pub fn new(page: &str, url: &str, secrets: &Secrets) -> ConsolePage {
        let mut tree = Tree {
            next: 1,
            marks: HashMap::new(),
            status_texts: Vec::new(),
        };
        let doc = document(&mut tree, secrets);
        let snapshot_elements = elements(&doc);
        let meta = json!({"href": url, "width": 1440, "height": 900});
        let snapshot = json!({"node": doc, "initialOffset": {"left": 0, "top": 0}});
        let snapshot_events = vec![
            json!({"type": 4, "data": meta, "timestamp": T0}),
            json!({"type": 2, "data": snapshot, "timestamp": T0 + 12}),
        ];
        ConsolePage {
            page: page.to_owned(),
            url: url.to_owned(),
            secrets: secrets.clone(),
            snapshot_events,
            snapshot_elements,
            tree,
            seq: 0,
            batch: 0,
            added: VecDeque::new(),
            clock: 0,
        }
    }

    fn mark(&self, name: &str) -> i64 {
        self.tree.marks.get(name).copied().unwrap_or(0)
    }

    /// The batch body: the page id first, as the recorder writes it (the proxy reads it before
    /// parsing the rest).
    fn body(&mut self, events: &[Value]) -> Vec<u8> {
        let seq = self.seq;
        self.seq += 1;
        let (url, title) = (
            Value::from(self.url.as_str()),
            Value::from("Instances | EC2 | Console"),
        );
        let events = Value::from(events.to_vec());
        format!(
            "{{\"page\":\"{}\",\"seq\":{seq},\"url\":{url},\"title\":{title},\
             \"heartbeat\":true,\"gone\":false,\"events\":{events}}}",
            self.page
        )
        .into_bytes()
    }

    /// The next batch carrying the full snapshot (rrweb sends one on load and at each
    /// checkout); the page's incremental batches refer to its nodes.
    pub fn snapshot_batch(&mut self) -> Vec<u8> {
        let events = self.snapshot_events.clone();
        self.body(&events)
    }

    /// The next incremental batch (one second of a busy console).
    pub fn incremental_batch(&mut self) -> Vec<u8> {
        self.batch += 1;
        self.clock += 1;
        let b = self.batch;
        let t = T0 + 1000 * b;
        let tbody = self.mark("tbody");
        // The added row: 21 nodes, appended to the table (one add per node, parents first, as
        // rrweb's mutation buffer emits them with `skipChild`).
        let row = row(&mut self.tree, ROWS + b as usize, &self.secrets.visible);
        let first = row["id"].as_i64().unwrap_or(0);
        let mut adds = Vec::new();
        flatten(&row, tbody, &mut adds);
        self.added.push_back(first);
        let removes: Vec<Value> = if self.added.len() > KEPT_ROWS {
            self.added
                .pop_front()
                .map(|id| json!({"parentId": tbody, "id": id}))
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        let statuses = &self.tree.status_texts;
        let status = |k: u64| statuses[((b * 7 + k * 13) as usize) % ROWS];
        let clock = clock_text(self.clock);
        let secrets = &self.secrets;
        let caller = format!("Last API call by {} at {clock}", secrets.access_key);
        let texts = vec![
            json!({"id": status(0), "value": STATES[(b % 4) as usize]}),
            json!({"id": status(1), "value": STATES[((b + 1) % 4) as usize]}),
            json!({"id": self.mark("clock_text"), "value": clock}),
            json!({"id": self.mark("caller_text"), "value": caller}),
            json!({"id": self.mark("secret_text"), "value": format!("{}{b}", secrets.masked_text)}),
        ];
        let attributes = vec![json!({"id": first, "attributes": {"class": "row selected"}})];
        let mutation = json!({
            "source": 0,
            "texts": texts,
            "attributes": attributes,
            "removes": removes,
            "adds": adds,
        });
        let positions = |k: u64| -> Value {
            let positions: Vec<Value> = (0..5u64)
                .map(|i| {
                    let j = k * 5 + i;
                    let (x, y) = (200 + (b * 37 + j * 11) % 900, 120 + (b * 53 + j * 7) % 600);
                    let offset = 100 * i as i64 - 450;
                    json!({"x": x, "y": y, "id": tbody, "timeOffset": offset})
                })
                .collect();
            json!({"source": 1, "positions": positions})
        };
        let input = |id: i64, text: &str| {
            let mut data = json!({"source": 5, "text": text, "isChecked": false, "id": id});
            data["userTriggered"] = json!(true);
            data
        };
        let scroll = json!({"source": 3, "id": self.mark("main"), "x": 0, "y": (b * 40) % 1800});
        let events = [
            (5, mutation),
            (500, positions(0)),
            (610, input(self.mark("search"), &format!("i-0{b:x}"))),
            (700, scroll),
            (820, input(self.mark("password"), &secrets.password)),
            (1000, positions(1)),
        ]
        .map(|(offset, data)| json!({"type": 3, "data": data, "timestamp": t + offset}));
        self.body(&events)
    }
}

fn clock_text(seconds: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        8 + seconds / 3600 % 16,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// `node` and its descendants as rrweb mutation adds (each node without its children, parents
/// first).
fn flatten(node: &Value, parent: i64, out: &mut Vec<Value>) {
    let mut own = node.clone();
    let children = own
        .as_object_mut()
        .and_then(|o| o.remove("childNodes"))
        .and_then(|c| c.as_array().cloned())
        .unwrap_or_default();
    let id = node["id"].as_i64().unwrap_or(0);
    if node["type"] == 2 {
        own["childNodes"] = json!([]);
    }
    out.push(json!({"parentId": parent, "nextId": null, "node": own}));
    for child in &children {
        flatten(child, id, out);
    }
}
