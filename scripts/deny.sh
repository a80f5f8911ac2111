#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licenses, banned or duplicate
# crates, and sources (crates.io only) for the host workspace and the plugins,
# and RustSec advisories when an advisory database is at hand.
#
# The advisory database is a git repository on GitHub. None of the package
# registries this project's machines reach (crates.io, PyPI, npm, Debian)
# carries a copy, and CI reaches only those, so there the advisories are
# skipped and the script says so on its last line, rather than failing every
# run for a reason no commit can fix. Where GitHub is reachable the database
# is fetched and checked; elsewhere a local copy can be named:
#
#   WASMFTPD_ADVISORY_DB=/path/to/advisory-db bash scripts/deny.sh
#
# (any git clone of the RustSec advisory database; it is cloned into
# cargo-deny's own place and checked as it is, its date printed).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

step "cargo-deny 0.20.2"
cargo_tool cargo-deny 0.20.2 cargo-deny

# Where cargo-deny 0.20.2 keeps the default database: the directory name ends
# in a hash of its URL.
url="https://github.com/RustSec/advisory-db"
db="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"

checks=(licenses bans sources)
advisories="NOT checked: the advisory database could not be fetched"
step "RustSec advisory database"
if [ -n "${WASMFTPD_ADVISORY_DB:-}" ]; then
  rm -rf "$db"
  mkdir -p "$(dirname "$db")"
  git clone -q "$WASMFTPD_ADVISORY_DB" "$db"
  advisories="checked against $WASMFTPD_ADVISORY_DB, last changed $(git -C "$db" log -1 --format=%cs)"
  checks+=(advisories)
  # Not left where a later run would fetch into it: cargo-deny updates an
  # existing database from its `origin`, which would then be this copy.
  trap 'rm -rf "$db"' EXIT
elif
  # A database cloned from anywhere but the real one (see above) is removed,
  # so that a successful fetch means the database came from its home.
  if [ -d "$db" ] && [ "$(git -C "$db" remote get-url origin 2>/dev/null)" != "$url" ]; then
    rm -rf "$db"
  fi
  timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1
then
  advisories="checked against the database fetched now, last changed $(git -C "$db" log -1 --format=%cs)"
  checks+=(advisories)
else
  echo "deny.sh: advisory database unreachable (set WASMFTPD_ADVISORY_DB to a local copy)"
fi

# One policy for both workspaces: the plugins' smaller tree uses only some of
# the allowed licenses, so the unused ones are reported for the host only.
for manifest in Cargo.toml plugins/Cargo.toml; do
  lints=()
  [ "$manifest" = Cargo.toml ] || lints=(--allow license-not-encountered)
  # The crates' sources (their license files) from crates.io; the check
  # itself then runs offline, so it never tries to fetch the database.
  step "cargo fetch ($manifest)"
  cargo fetch --locked --manifest-path "$manifest" -q
  step "cargo deny check ${checks[*]} ($manifest)"
  cargo deny --manifest-path "$manifest" --config deny.toml --log-level warn \
    --offline --locked check "${lints[@]}" "${checks[@]}"
done
echo "deny.sh: licenses, bans, sources passed; advisories $advisories"
