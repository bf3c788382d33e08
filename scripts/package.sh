#!/usr/bin/env bash
# Builds what the Terraform modules deploy:
#   target/lambda/collect-usage/bootstrap.zip    AWS Lambda (runtime provided.al2023), the timer job
#   target/lambda/register-stamp/bootstrap.zip   AWS Lambda, the webhook behind a Function URL
#   target/functionapp/azs-usage-functionapp.zip Azure Function App: host.json, both function.json, handler
#
# Usage: scripts/package.sh [--x86-64|--arm64|--both|--debug]
#   --x86-64  (default, the Terraform modules' default architecture) Lambda zips and the Azure handler for
#             x86_64, in one release build linked by zig against glibc 2.28 (target
#             x86_64-unknown-linux-gnu.2.28): the oldest glibc of the Functions Linux images, so the
#             handler runs on every one of them; Lambda's al2023 has 2.34, so the same build serves both.
#   --arm64   Lambda zips for Graviton, cross-built with zig (cargo-lambda's default); needs the
#             aarch64-unknown-linux-gnu standard library (`rustup target add aarch64-unknown-linux-gnu`)
#   --both    both; every build is also kept under target/lambda/<arch>/<bin>/bootstrap.zip and the
#             arm64 one is the default target/lambda/<bin>/bootstrap.zip
#   --debug   no build: the same zips from the host's debug binaries that `cargo test --workspace
#             --no-run` (or `cargo build --bins`) left in target/debug, for the platform tests of
#             scripts/test.sh. Not deployable: linked against this machine's glibc.
# The Azure handler is always x86_64 (Linux Function Apps run on x86_64), glibc 2.28. A release build is
# refused when a binary asks for a newer glibc than its platform has (2.34 on Lambda's al2023, 2.28 for
# the handler): the check reads the binaries' GLIBC_2.N symbol versions.
#
# cargo-lambda comes from .venv/tools (scripts/python-tools.sh); zips are written with python3's
# zipfile (Debian does not always have `zip`), executables with mode 0755, entries dated 1980-01-01 so
# the same build gives the same zip.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LAMBDA_BINS=(collect-usage register-stamp)
HANDLER_TARGET=x86_64-unknown-linux-gnu
# zig links against this glibc's symbol versions (cargo-zigbuild's `.2.28` suffix); cargo still writes the
# binaries under target/$HANDLER_TARGET/release.
OLD_GLIBC_TARGET="$HANDLER_TARGET.2.28"
# Pinned like scripts/python-tools.sh; used only when that script is missing.
TOOLS_REQS=("cargo-lambda==1.9.2" "ziglang==0.17.1")

log() { echo "package.sh: $*" >&2; }

case "${1:---x86-64}" in
  --arm64) arches=(arm64) ;;
  --x86-64) arches=(x86-64) ;;
  --both) arches=(x86-64 arm64) ;;
  --debug) arches=(debug) ;;
  *) echo "usage: $0 [--x86-64|--arm64|--both|--debug]" >&2; exit 2 ;;
esac

ensure_cargo_lambda() {
  if [[ ! -x "$ROOT/.venv/tools/bin/cargo-lambda" ]]; then
    if [[ -x "$ROOT/scripts/python-tools.sh" ]]; then
      "$ROOT/scripts/python-tools.sh" tools
    else
      log "creating .venv/tools (${TOOLS_REQS[*]})"
      python3 -m venv "$ROOT/.venv/tools"
      "$ROOT/.venv/tools/bin/python" -m pip install --quiet --disable-pip-version-check "${TOOLS_REQS[@]}"
    fi
  fi
  # `cargo lambda` finds the subcommand on PATH; zig comes from the ziglang wheel in the same venv.
  export PATH="$ROOT/.venv/tools/bin:$PATH"
}

build_lambdas() {
  local arch="$1" out="$TARGET_DIR/lambda/$1"
  # --disable-optimizations: keep the workspace's release profile (strip, thin LTO, unwinding panics so
  # the webhook's catch-panic layer answers 500) instead of cargo-lambda's panic=abort and target-cpu
  # flags; it also lets the handler share this build.
  local args=(--release --disable-optimizations --output-format zip --lambda-dir "$out")
  local bins=("${LAMBDA_BINS[@]}")
  case "$arch" in
    x86-64)
      args+=(--target "$OLD_GLIBC_TARGET")
      # Same target and flags as the handler: one cargo build (one feature resolution) makes all three;
      # built separately, the handler's smaller feature set would recompile most dependencies.
      bins+=(handler)
      ;;
    arm64)
      if [[ ! -d "$(rustc --print sysroot)/lib/rustlib/aarch64-unknown-linux-gnu" ]]; then
        log "the aarch64-unknown-linux-gnu standard library is not installed;"
        log "run 'rustup target add aarch64-unknown-linux-gnu', or package with --x86-64"
        exit 1
      fi
      args+=(--arm64)
      ;;
  esac
  for bin in "${bins[@]}"; do args+=(--bin "$bin"); done
  log "$arch: cargo lambda build ${args[*]}"
  cargo lambda build "${args[@]}"
  rm -rf "$out/handler"  # not a Lambda function; its binary is taken from cargo's output below
}

build_handler() {
  if [[ -x "$TARGET_DIR/$HANDLER_TARGET/release/handler" && " ${arches[*]} " == *" x86-64 "* ]]; then
    return 0  # built together with the x86-64 Lambda functions
  fi
  log "Azure custom handler: cargo lambda build --release --target $OLD_GLIBC_TARGET --bin handler"
  cargo lambda build --release --disable-optimizations --target "$OLD_GLIBC_TARGET" --bin handler \
    --lambda-dir "$TARGET_DIR/lambda/handler-build"
  rm -rf "$TARGET_DIR/lambda/handler-build"  # not a Lambda function; its binary is taken from cargo's output
}

# zip_dir SRC_DIR ZIP: every file under SRC_DIR, executables kept executable.
zip_dir() {
  python3 - "$1" "$2" <<'PY'
import os, stat, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            info = zipfile.ZipInfo(os.path.relpath(path, src), date_time=(1980, 1, 1, 0, 0, 0))
            mode = 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.create_system = 3  # Unix, so that the mode bits are honoured on extraction
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read())
os.replace(tmp, out)
PY
}

# package_function_app HANDLER_BINARY
package_function_app() {
  local stage="$TARGET_DIR/functionapp/app" zip="$TARGET_DIR/functionapp/azs-usage-functionapp.zip"
  rm -rf "$stage"
  mkdir -p "$stage"
  cp -R "$ROOT/functions/azure/app/." "$stage/"
  install -m 0755 "$1" "$stage/handler"
  zip_dir "$stage" "$zip"
  log "wrote $zip"
}

# newest_glibc FILE [ZIP_ENTRY]: the newest GLIBC_2.N symbol version an executable asks for (N; 0 when
# none), the executable being FILE or the entry ZIP_ENTRY of the zip FILE.
newest_glibc() {
  python3 - "$@" <<'PY'
import re, sys, zipfile
if len(sys.argv) > 2:
    data = zipfile.ZipFile(sys.argv[1]).read(sys.argv[2])
else:
    data = open(sys.argv[1], "rb").read()
print(max((int(v) for v in re.findall(rb"GLIBC_2\.(\d+)", data)), default=0))
PY
}

# check_glibc FLOOR WHERE FILE [ZIP_ENTRY]: refuse an executable that would not start on its platform.
check_glibc() {
  local floor="$1" where="$2" needs
  shift 2
  needs="$(newest_glibc "$@")"
  if (( needs > floor )); then
    log "${*#"$TARGET_DIR"/} needs GLIBC_2.$needs; $where has 2.$floor"
    exit 1
  fi
  log "${*#"$TARGET_DIR"/}: needs GLIBC_2.$needs ($where has 2.$floor)"
}

# package_debug: the zips of a release build, from the host's debug binaries, without building.
package_debug() {
  local bin out
  for bin in "${LAMBDA_BINS[@]}" handler; do
    if [[ ! -x "$TARGET_DIR/debug/$bin" ]]; then
      log "$TARGET_DIR/debug/$bin is missing: run 'cargo test --workspace --no-run' (or 'cargo build --bins') first"
      exit 1
    fi
  done
  for bin in "${LAMBDA_BINS[@]}"; do
    out="$TARGET_DIR/lambda/$bin"
    rm -rf "$out"
    mkdir -p "$out/stage"
    install -m 0755 "$TARGET_DIR/debug/$bin" "$out/stage/bootstrap"
    zip_dir "$out/stage" "$out/bootstrap.zip"
    rm -rf "$out/stage"
    echo debug > "$out/ARCH"
  done
  package_function_app "$TARGET_DIR/debug/handler"
  log "wrote debug packages (not deployable) under $TARGET_DIR/lambda and $TARGET_DIR/functionapp"
}

if [[ "${arches[0]}" == debug ]]; then
  package_debug
  exit 0
fi

ensure_cargo_lambda
for arch in "${arches[@]}"; do
  build_lambdas "$arch"
  if [[ "$arch" == x86-64 ]]; then
    # Amazon Linux 2023 ships glibc 2.34.
    for bin in "${LAMBDA_BINS[@]}"; do
      check_glibc 34 "Lambda's al2023" "$TARGET_DIR/lambda/x86-64/$bin/bootstrap.zip" bootstrap
    done
  fi
done
# The default location holds the requested architecture (arm64 for --both).
default_arch="${arches[-1]}"
for bin in "${LAMBDA_BINS[@]}"; do
  mkdir -p "$TARGET_DIR/lambda/$bin"
  cp "$TARGET_DIR/lambda/$default_arch/$bin/bootstrap.zip" "$TARGET_DIR/lambda/$bin/bootstrap.zip"
  echo "$default_arch" > "$TARGET_DIR/lambda/$bin/ARCH"
done
build_handler
package_function_app "$TARGET_DIR/$HANDLER_TARGET/release/handler"
check_glibc 28 "the oldest Functions Linux image" "$TARGET_DIR/functionapp/app/handler"

log "sizes (stripped release binaries, zips):"
for f in "$TARGET_DIR"/{x86_64,aarch64}-unknown-linux-gnu/release/{collect-usage,register-stamp,handler} \
         "$TARGET_DIR"/lambda/*/bootstrap.zip "$TARGET_DIR/functionapp/azs-usage-functionapp.zip"; do
  if [[ -f "$f" ]]; then printf '  %10d  %s\n' "$(stat -c %s "$f")" "${f#"$TARGET_DIR"/}" >&2; fi
done
