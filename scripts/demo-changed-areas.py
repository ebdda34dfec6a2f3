#!/usr/bin/python3
"""demo-changed-areas.py OLD NEW CHANGE_ID: the change list of NEW since OLD.

Stands in for a hypervisor's changed-block tracking in scripts/demo.sh:
VMware's QueryChangedDiskAreas would tell which areas of the disk were
written since the snapshot with CHANGE_ID; here the demo compares the
disk with the copy it saved at that backup, 64 KiB block by block, and
prints the same JSON (areas sorted, touching ones merged)."""
import json
import sys

BLOCK = 64 * 1024
old_path, new_path, change_id = sys.argv[1:4]
areas = []
with open(old_path, "rb") as old, open(new_path, "rb") as new:
    offset = 0
    while True:
        a, b = old.read(BLOCK), new.read(BLOCK)
        if not a and not b:
            break
        if a != b:
            if areas and areas[-1]["start"] + areas[-1]["length"] == offset:
                areas[-1]["length"] += len(b)
            else:
                areas.append({"start": offset, "length": len(b)})
        offset += len(b)
head = json.dumps({"changeId": change_id, "startOffset": 0, "length": offset})
print(head[:-1] + ', "changedArea": [' +
      ",".join("\n  " + json.dumps(a) for a in areas) + "]}")
