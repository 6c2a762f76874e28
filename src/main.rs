//! The `labctl` command: parse arguments, call the library, render for people or machines.

mod cli;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    return_freed_memory_promptly();
    cli::main()
}

/// mimalloc v3's options of that name (`mimalloc.h`'s `mi_option_e`; libmimalloc-sys names
/// no constant for them). A test holds them to their documented defaults.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// By default mimalloc keeps what a program frees for a second (ten for whole arenas) before
/// giving it back, and commits an arena's memory when it reserves it. A run allocates and
/// frees in phases (validate, observe, diff, record), so the peak RSS was every phase's
/// memory at once: at 100k resources a reconcile peaked at 275 MB, and at 199 MB with
/// memory returned at once and committed as used, for the same CPU time (BENCHMARKS.md). A
/// value the environment sets (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ARENA_EAGER_COMMIT`) wins.
fn return_freed_memory_promptly() {
    for (option, variable) in [
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT"),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: sets an option of the allocator this binary links; 0 is valid for both.
            unsafe { libmimalloc_sys::mi_option_set(option, 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_options_are_the_ones_meant() {
        // Their defaults in mimalloc v3 (`src/options.c`): a version that moved the options
        // would show other values here, and main would set the wrong ones.
        // SAFETY: reads an option of the allocator this binary links.
        let get = |option| unsafe { libmimalloc_sys::mi_option_get(option) };
        let unset = |variable| std::env::var_os(variable).is_none();
        let checked = [
            (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 1000),
            (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 2),
        ];
        for (option, variable, default) in checked {
            if unset(variable) {
                assert_eq!(get(option), default, "{variable}");
            }
        }
        return_freed_memory_promptly();
        for (option, variable, _) in checked {
            if unset(variable) {
                assert_eq!(get(option), 0, "{variable}");
            }
        }
    }
}
