from tests.test_records import CLEAN, DRIVERS
from tests import imitations
from conformance.lockstep import machine as M
from conformance.lockstep.machine import run_machine
from conformance.records import behaviours as records
from reference.options import Options

def test_probe(monkeypatch):
    orig = records.match
    def match(recs, found, ctx):
        m = orig(recs, found, ctx)
        if "wh-file-names" in m.by_record:
            print("\nPROBE op", ctx.op, "diffs", m.by_record, "\nOTHERS", {k:v for k,v in m.by_record.items()})
        return m
    monkeypatch.setattr(records, "match", match)
    orig_run = M.OverlayMachine.run
    def run(self, stack, program):
        self._prog = (stack, program)
        try:
            return orig_run(self, stack, program)
        finally:
            if "wh-file-names" in getattr(self, "_seen_dbg", ()): pass
    with records.tally() as seen:
        run_machine(DRIVERS["fuse-overlayfs"](), Options(), CLEAN, behaviours=imitations.records_of("fuse-overlayfs"))
