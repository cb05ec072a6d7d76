//! Catching a panic in user code (a translator, a service's `apply` or `snapshot`) at the call,
//! so one bad event costs a dead letter instead of the node: a node that stopped on it would read
//! the same event again after every restart and never get past it.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; a panic becomes `Err` with its message.
///
/// The state `f` touched is the caller's to discard (the writer drops the command's staged
/// writes), which is why unwind safety is asserted here rather than required of callers.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_a_value_passes_through() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(catch(|| -> i32 { panic!("boom {}", 1) }), Err("boom 1".to_string()));
        assert_eq!(catch(|| -> i32 { panic!("static") }), Err("static".to_string()));
    }
}
