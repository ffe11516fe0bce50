#!/usr/bin/env bash
# Keeps the library's layers pointing one way down (DESIGN §2): a module may use only the
# modules below it in this list. Fails listing every offending `crate::` reference.
set -euo pipefail
cd "$(dirname "$0")/../libfs/src"
# Lowest first. `error` and `lib` stand outside the order.
order=(units sync util format dev sb journal btree recovery init inspect)
status=0
for ((i = 0; i < ${#order[@]}; i++)); do
  layer=${order[$i]}
  files=$(ls -d "$layer" "$layer.rs" 2>/dev/null || true)
  [ -n "$files" ] || continue
  for ((j = i + 1; j < ${#order[@]}; j++)); do
    above=${order[$j]}
    # sync and util are one level: they may use each other. They sit below everything (they
    # depend on nothing), so fault sites can live in dev/ and every layer above.
    if [[ "$layer:$above" == "sync:util" ]]; then continue; fi
    if hits=$(grep -rnE "crate::${above}\b" $files 2>/dev/null); then
      echo "layering: $layer/ uses $above/, which is above it:"
      echo "$hits"
      status=1
    fi
  done
done
[ $status -eq 0 ] && echo "layering: ok (${order[*]})"
exit $status
