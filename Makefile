# The two commands of the README:
#   make demo   build and run the all-in-one server with the demo workload (UI on :7070)
#   make test   install what the tests need, then run every check and test (including a smoke
#               run of the benchmark harness, which checks that every figure is produced)
# And: make bench (quick benchmark, release build), make bench-full.
.PHONY: demo test bench bench-full

demo:
	cargo run --release -- server --demo

test:
	tests/setup.sh
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo build --workspace --bins
	target/debug/loupe-bench --smoke
	cargo nextest run --workspace --no-fail-fast

bench:
	tests/setup.sh
	cargo build --release --workspace --bins
	target/release/loupe-bench --quick

bench-full:
	tests/setup.sh
	cargo build --release --workspace --bins
	target/release/loupe-bench
