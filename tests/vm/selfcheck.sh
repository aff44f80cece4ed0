#!/bin/bash
# Self-check of the VM test tier (run on the host): boots the guest and runs
# tests/vm/selfcheck-guest.sh there, which exits 3 when every check passes.
# Also proves that a failing pytest run propagates its status.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$VM_DIR/build.sh"
# shellcheck source=/dev/null
. "$VM_DIR/.cache/current.env"

rc=0
"$VM_DIR/run" --cmd "EXPECT_KVER=$KVER bash tests/vm/selfcheck-guest.sh" || rc=$?
if [ $rc -ne 3 ]; then
    echo "selfcheck: FAILED: guest checks exited $rc, expected 3" >&2
    exit 1
fi

# pytest form: a directory that does not exist makes pytest exit 4.
rc=0
"$VM_DIR/run" -q tests/does-not-exist-vm-selfcheck || rc=$?
if [ $rc -ne 4 ]; then
    echo "selfcheck: FAILED: pytest in the guest exited $rc, expected 4" >&2
    exit 1
fi
echo "selfcheck: OK"
