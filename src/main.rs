//! The `labctl` command: parse arguments, call the library, render for people or machines.

mod cli;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(not(target_os = "linux"))]
    return_freed_memory_promptly();
    cli::main()
}

/// mimalloc v3's options of that name (`mimalloc.h`'s `mi_option_e`; libmimalloc-sys names
/// no constant for them, only their neighbours, which a test holds them to).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// By default mimalloc keeps what a program frees for a second (ten for whole arenas) before
/// giving it back, and commits an arena's memory when it reserves it. A run allocates and
/// frees in phases (validate, observe, diff, record), so the peak RSS was every phase's
/// memory at once: at 100k resources a reconcile peaked at 275 MB, and at 199–201 MB with
/// memory returned at once and committed as used, for the same CPU time (BENCHMARKS.md). A
/// value the environment sets (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ARENA_EAGER_COMMIT`) wins.
///
/// Nothing here allocates: it runs before the first allocation (see [`SET_OPTIONS`]).
fn return_freed_memory_promptly() {
    for (option, variable) in [
        (PURGE_DELAY, c"MIMALLOC_PURGE_DELAY"),
        (ARENA_EAGER_COMMIT, c"MIMALLOC_ARENA_EAGER_COMMIT"),
    ] {
        // SAFETY: reads the environment before any thread exists; the name is a C string.
        if unsafe { libc::getenv(variable.as_ptr()) }.is_null() {
            // SAFETY: sets an option of the allocator this binary links; 0 is valid for both.
            unsafe { libmimalloc_sys::mi_option_set(option, 0) };
        }
    }
}

/// An ELF constructor: mimalloc applies the arena option when it reserves an arena, which the
/// Rust runtime's first allocation does before `main` runs. mimalloc's own constructor runs
/// before this one (priority 101), so the options are set on an initialised allocator.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static SET_OPTIONS: extern "C" fn() = {
    extern "C" fn set_options() {
        return_freed_memory_promptly();
    }
    set_options
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_options_are_set_before_anything_runs() {
        // Where libmimalloc-sys names the options around them, they are where v3 has them.
        assert_eq!(PURGE_DELAY, libmimalloc_sys::mi_option_use_numa_nodes - 1);
        const { assert!(ARENA_EAGER_COMMIT < libmimalloc_sys::mi_option_large_os_pages) };
        // This test binary has the constructor too: set before the harness started.
        for (option, variable) in [
            (PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
            (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT"),
        ] {
            if std::env::var_os(variable).is_none() {
                // SAFETY: reads an option of the allocator this binary links.
                assert_eq!(
                    unsafe { libmimalloc_sys::mi_option_get(option) },
                    0,
                    "{variable}"
                );
            }
        }
    }
}
