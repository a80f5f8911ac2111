#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licenses, banned or duplicate
# crates, and sources (crates.io only) for the host workspace and the plugins;
# advisories (RustSec) too when the advisory database can be fetched. The
# database lives on GitHub, which some machines (this project's CI among them)
# cannot reach: then advisories are skipped and the script says so loudly,
# rather than failing every run for a reason no commit can fix.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

step "cargo-deny 0.20.2"
cargo_tool cargo-deny 0.20.2 cargo-deny

checks=(licenses bans sources)
step "RustSec advisory database"
if timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  checks+=(advisories)
else
  echo "deny.sh: advisory database unreachable: advisories NOT checked (licenses, bans, sources are)"
fi

for manifest in Cargo.toml plugins/Cargo.toml; do
  step "cargo deny check ${checks[*]} ($manifest)"
  cargo deny --manifest-path "$manifest" --log-level warn check --disable-fetch \
    --config deny.toml "${checks[@]}"
done
