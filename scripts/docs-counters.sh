#!/bin/bash
# docs-counters.sh AFSP FILE: replaces the counters' tables in FILE (between the markers) with
# what `AFSP stats --doc` prints.
set -euo pipefail
afsp=$1 file=$2
table=$("$afsp" stats --doc)
/usr/bin/python3 - "$file" "$table" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
s = open(path).read()
a = s.index("<!-- counters: generated")
a = s.index("\n", a) + 1
b = s.index("<!-- end of counters -->")
open(path, "w").write(s[:a] + table + "\n" + s[b:])
PY
