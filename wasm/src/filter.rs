//! The worker side: a root context that picks up the singleton's set on a timer, and the
//! HTTP context that judges each request. Per request: the freshness flag (kept by the
//! timer, no host call), one header read, the verdict memo (crate::memo: a token seen
//! since the set last changed costs a hash and a comparison) or else the decode and the
//! lookups, and one header write (the marker that lets ext_authz skip the request, or
//! its removal); everything else lives in buffers reused from request to request. Envoy
//! calls nothing else of the module per request but the context's creation and deletion
//! (wasm/wasm-ld-callbacks.sh keeps the other callbacks out of its exports).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::config::{Config, OnStale, Role};
use crate::judge::{judge, Scratch};
use crate::memo::Memo;
use crate::reason::{Reason, Responses};
use crate::set::Set;

#[derive(Default)]
struct Vm {
    config: Config,
    responses: Responses,
    set: Set,
    /// The generation of `set` (the singleton's counter).
    gen: Option<u64>,
    /// Whether the last sync is within `stale_after_ms` and `set` is its copy.
    fresh: bool,
    /// Unix seconds at the last tick (requests read the clock from here, not the host).
    now: i64,
    scratch: Scratch,
    /// Verdicts since `set` last changed (cleared with every new copy).
    memo: Memo,
}

#[derive(Default)]
pub struct Root {
    vm: Rc<RefCell<Vm>>,
    sync: Option<crate::sync::Sync>,
}

fn now_ms(ctx: &dyn Context) -> i64 {
    ctx.get_current_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _h: usize, body_size: usize, _t: usize) {
        if let Some(sync) = self.sync.as_mut() {
            sync.on_response(token, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self.get_plugin_configuration().unwrap_or_default();
        let config = match Config::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                log::error!("tokengate fast path: configuration refused: {e}");
                return false;
            }
        };
        self.set_tick_period(Duration::from_millis(config.tick_ms));
        if config.role == Role::Sync {
            self.sync = Some(crate::sync::Sync::new(config.clone(), true));
        } else if config.self_sync {
            self.sync = Some(crate::sync::Sync::new(config.clone(), false));
        }
        let mut vm = self.vm.borrow_mut();
        vm.responses = Responses::new(&config.realm, config.retry_after_seconds);
        vm.memo = Memo::new(usize::try_from(config.verdict_cache_slots).unwrap_or(0));
        vm.config = config;
        vm.fresh = false;
        true
    }

    fn on_tick(&mut self) {
        let role = self.vm.borrow().config.role;
        let now = now_ms(self);
        self.vm.borrow_mut().now = now / 1000;
        match (role, self.sync.as_mut()) {
            (Role::Sync, Some(sync)) => sync.on_tick(),
            (_, Some(sync)) => {
                // self_sync: this worker's own poll feeds its own set.
                sync.on_tick();
                let mut vm = self.vm.borrow_mut();
                if vm.gen != Some(sync.gen) && sync.last_ok > 0 {
                    vm.set = sync.set.clone();
                    vm.gen = Some(sync.gen);
                    vm.memo.clear();
                }
                let stale_after = vm.config.stale_after_ms as i64;
                vm.fresh = sync.last_ok > 0 && now.saturating_sub(sync.last_ok) <= stale_after;
            }
            (_, None) => self.refresh(),
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            vm: self.vm.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Root {
    /// Reads the singleton's head (generation, time of the last good sync) and, when the
    /// generation moved, its copy of the set. A copy that does not read leaves the
    /// worker stale: it never claims to be current with a set it could not apply.
    fn refresh(&mut self) {
        let now = now_ms(self);
        let (head, _) = self.get_shared_data(crate::HEAD_KEY);
        let head = head.and_then(|h| parse_head(&h));
        let mut vm = self.vm.borrow_mut();
        let (gen, last_ok) = match head {
            Some(h) => h,
            None => {
                vm.fresh = false;
                return;
            }
        };
        if vm.gen != Some(gen) {
            let (blob, _) = self.get_shared_data(crate::SET_KEY);
            let mut set = Set::default();
            let read = blob.as_deref().map(|b| (set_gen(b), set.apply(b)));
            match read {
                Some((Some(g), Ok(_))) => {
                    vm.set = set;
                    vm.gen = Some(g);
                    vm.memo.clear();
                }
                _ => {
                    log::warn!(
                        "tokengate fast path: the shared set does not read; stale until the next"
                    );
                    vm.fresh = false;
                    vm.gen = None;
                    return;
                }
            }
        }
        let stale_after = vm.config.stale_after_ms as i64;
        vm.fresh = now.saturating_sub(last_ok) <= stale_after;
    }
}

/// `"{gen} {last_ok_ms}"`.
pub fn parse_head(b: &[u8]) -> Option<(u64, i64)> {
    let s = std::str::from_utf8(b).ok()?;
    let (g, t) = s.split_once(' ')?;
    Some((g.parse().ok()?, t.parse().ok()?))
}

/// The set copy's first line: `{"gen":N}`.
fn set_gen(b: &[u8]) -> Option<u64> {
    let first = b.split(|c| *c == b'\n').next()?;
    let s = std::str::from_utf8(first).ok()?;
    s.strip_prefix("{\"gen\":")?.strip_suffix('}')?.parse().ok()
}

struct Request {
    vm: Rc<RefCell<Vm>>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let mut vm = self.vm.borrow_mut();
        let vm = &mut *vm;
        let marker = vm.config.fast_path_header.as_str();
        let marked = !marker.is_empty();
        if !vm.fresh {
            if vm.config.on_stale == OnStale::Fallback {
                // ext_authz judges this one: a client's copy of the marker must go.
                self.set_http_request_header(marker, None);
                return Action::Continue;
            }
            return deny(self, &vm.responses, Reason::StoreUnavailable);
        }
        let p64 = match self.get_http_request_header_bytes(&vm.config.payload_header) {
            Some(p) => p,
            None => {
                // No verified token (a route jwt_authn lets through without one):
                // nothing for the fast path to judge; ext_authz, if there, decides.
                if marked {
                    self.set_http_request_header(marker, None);
                }
                return Action::Continue;
            }
        };
        let slot = vm.memo.slot(&p64);
        let verdict = match slot.and_then(|i| vm.memo.get(i, &p64)) {
            Some(kept) => kept,
            None => {
                let v = judge(&p64, vm.now, &vm.config.rules, &vm.set, &mut vm.scratch);
                if let Some(i) = slot {
                    vm.memo.put(i, &p64, v);
                }
                v
            }
        };
        match verdict {
            Some(reason) => deny(self, &vm.responses, reason),
            None => {
                // Judged with a fresh set: ext_authz (when in the chain) skips it.
                if marked {
                    self.set_http_request_header(marker, Some("1"));
                }
                Action::Continue
            }
        }
    }
}

fn deny(ctx: &Request, responses: &Responses, reason: Reason) -> Action {
    if let Some(r) = responses.get(reason) {
        let headers: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ctx.send_http_response(r.status, headers, Some(&r.body));
    } else {
        ctx.send_http_response(503, vec![], None);
    }
    Action::Pause
}
