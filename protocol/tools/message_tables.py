# Prints the per-message field tables of PROTOCOL.md (sections 9 and 10) from the wire_struct!
# definitions: python3 tools/message_tables.py src/client/handshake.rs src/client/admin.rs ...
import re,sys
def parse(path):
    s=open(path).read()
    out=[]
    for m in re.finditer(r'wire_struct!\s*\{\s*((?:///[^\n]*\n\s*)*)pub struct (\w+) \{(.*?)\n    \}\n\}', s, re.S):
        doc=' '.join(l.strip()[3:].strip() for l in m.group(1).strip().splitlines())
        name=m.group(2); body=m.group(3)
        fields=[]
        for fm in re.finditer(r'((?:\s*///[^\n]*\n)*)\s*pub (\w+): ([^,]+),', body):
            fd=' '.join(l.strip()[3:].strip() for l in fm.group(1).strip().splitlines())
            fields.append((fm.group(2),fm.group(3).strip(),fd))
        out.append((name,doc,fields))
    return out
def ty(t):
    t=t.replace('crate::client::','').replace('crate::error::','')
    return t
for path in sys.argv[1:]:
    for name,doc,fields in parse(path):
        print(f"#### `{name}`\n\n{doc}\n")
        if not fields:
            print("Empty body (0 bytes).\n"); continue
        print("| field | type | meaning |\n|---|---|---|")
        for f,t,d in fields:
            dd=d.replace('|','&#124;')
            print(f"| `{f}` | `{ty(t)}` | {dd} |")
        print()
