# The two commands of the README:
#   make demo   build and run the all-in-one server with the demo workload (UI on :7070)
#   make test   install what the tests need, then run every check and test
.PHONY: demo test lint

demo:
	cargo run --release -- server --demo

test:
	tests/setup.sh
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo nextest run --workspace --no-fail-fast
