#!/usr/bin/env python3
"""Check the shipped D-Bus introspection XML against SPEC §5.

    python3 tests/check-dbus-xml.py dbus/*.xml

Every file must be well-formed introspection XML (the introspect.dtd 1.0 DOCTYPE, one <node>
with one <interface>, named after the interface) and together the files must declare exactly the
interfaces, members, argument names, types, directions and property access of the table below,
in the spec's order, with valid D-Bus type signatures. Prints one line per problem, then
"N passed, M failed"; exits 1 if anything failed, 2 on bad usage.

Standard library only. The table is transcribed from SPEC §5: when the interface changes, change
the spec, this table and the XML together.
"""

import os
import re
import sys
import xml.parsers.expat
import xml.etree.ElementTree as ET

# ---------------------------------------------------------------------------------------------
# SPEC §5. Properties: (name, type, access, annotations). Methods: (name, [(arg, type, dir)]).
# Signals: (name, [(arg, type)]).

EMITS_CHANGED = "org.freedesktop.DBus.Property.EmitsChangedSignal"

SPEC = {
    "org.imapidled.Daemon1.Manager": {
        "properties": [
            ("Version", "s", "read", {EMITS_CHANGED: "const"}),
            ("Paused", "b", "readwrite", {}),
            ("UnseenTotal", "u", "read", {}),
            ("State", "s", "read", {}),
        ],
        "methods": [
            ("ListMailboxes", [("mailboxes", "a(ssouus)", "out")]),
            ("CheckNow", []),
            ("Reload", []),
            ("MarkSeen", [("account", "s", "in"), ("mailbox", "s", "in"), ("uid", "u", "in")]),
        ],
        "signals": [
            ("NewMail", [("account", "s"), ("mailbox", "s"), ("uid", "u"), ("from", "s"),
                         ("subject", "s"), ("details", "a{sv}")]),
            ("MailRemoved", [("account", "s"), ("mailbox", "s"), ("uids", "au")]),
            ("AccountStateChanged", [("account", "s"), ("state", "s"), ("message", "s")]),
        ],
    },
    "org.imapidled.Daemon1.Account": {
        "properties": [
            ("Name", "s", "read", {}),
            ("Host", "s", "read", {}),
            ("User", "s", "read", {}),
            ("State", "s", "read", {}),
            ("LastError", "s", "read", {}),
            ("Unseen", "u", "read", {}),
        ],
        "methods": [],
        "signals": [],
    },
    "org.imapidled.Daemon1.Mailbox": {
        "properties": [
            ("Account", "s", "read", {}),
            ("Name", "s", "read", {}),
            ("State", "s", "read", {}),
            ("Unseen", "u", "read", {}),
            ("Exists", "u", "read", {}),
            ("UidValidity", "u", "read", {}),
            ("UidNext", "u", "read", {}),
            ("LastError", "s", "read", {}),
        ],
        "methods": [],
        "signals": [],
    },
}

DOCTYPE_PUBLIC = "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
DOCTYPE_SYSTEM = "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd"

# ---------------------------------------------------------------------------------------------
# D-Bus type signatures (D-Bus specification, "Type System" and "Valid Signatures").

BASIC_TYPES = set("ybnqiuxtdhsog")
MAX_SIGNATURE_LENGTH = 255
MAX_ARRAY_DEPTH = 32
MAX_STRUCT_DEPTH = 32   # dict entries count as structs, as in sd-bus


def _complete_type(sig, pos, arrays, structs):
    """Parse one complete type at sig[pos]; return the position after it.

    Raises ValueError with the reason when there is none.
    """
    if pos >= len(sig):
        raise ValueError("a type is missing at the end")
    c = sig[pos]
    if c in BASIC_TYPES or c == "v":
        return pos + 1
    if c == "a":
        if arrays + 1 > MAX_ARRAY_DEPTH:
            raise ValueError("arrays nested deeper than %d" % MAX_ARRAY_DEPTH)
        if pos + 1 < len(sig) and sig[pos + 1] == "{":
            return _dict_entry(sig, pos + 1, arrays + 1, structs)
        return _complete_type(sig, pos + 1, arrays + 1, structs)
    if c == "(":
        if structs + 1 > MAX_STRUCT_DEPTH:
            raise ValueError("structs nested deeper than %d" % MAX_STRUCT_DEPTH)
        pos += 1
        if pos < len(sig) and sig[pos] == ")":
            raise ValueError("empty struct at %d" % (pos - 1))
        while pos < len(sig) and sig[pos] != ")":
            pos = _complete_type(sig, pos, arrays, structs + 1)
        if pos >= len(sig):
            raise ValueError("struct not closed")
        return pos + 1
    if c == "{":
        raise ValueError("dict entry outside an array at %d" % pos)
    if c in ")}":
        raise ValueError("unexpected %r at %d" % (c, pos))
    raise ValueError("unknown type code %r at %d" % (c, pos))


def _dict_entry(sig, pos, arrays, structs):
    """sig[pos] is the '{' of a dict entry right after an 'a'."""
    if structs + 1 > MAX_STRUCT_DEPTH:
        raise ValueError("structs nested deeper than %d" % MAX_STRUCT_DEPTH)
    pos += 1
    if pos >= len(sig) or sig[pos] not in BASIC_TYPES:
        raise ValueError("dict entry key must be a basic type")
    pos += 1
    if pos < len(sig) and sig[pos] == "}":
        raise ValueError("dict entry without a value type")
    pos = _complete_type(sig, pos, arrays, structs + 1)
    if pos >= len(sig) or sig[pos] != "}":
        raise ValueError("dict entry must hold exactly a key and a value")
    return pos + 1


def signature_problem(sig, single=True):
    """None if sig is a valid signature (one complete type when single), else the reason."""
    if len(sig) > MAX_SIGNATURE_LENGTH:
        return "longer than %d bytes" % MAX_SIGNATURE_LENGTH
    if single and not sig:
        return "empty"
    pos = 0
    try:
        while pos < len(sig):
            pos = _complete_type(sig, pos, 0, 0)
            if single and pos != len(sig):
                return "more than one complete type"
    except ValueError as e:
        return str(e)
    return None


# The validator is itself checked on every run, so a broken validator cannot pass bad XML.
SIGNATURE_SELF_TEST = [
    ("s", True), ("v", True), ("h", True), ("au", True), ("a{sv}", True), ("a(ssouus)", True),
    ("aa{sv}", True), ("a{s(ii)}", True), ("a{oa{sa{sv}}}", True), ("(i(ii))", True),
    ("a" * 32 + "i", True), ("(" * 32 + "i" + ")" * 32, True),
    ("", False), ("a", False), ("z", False), ("ss", False), ("()", False), ("(i", False),
    ("i)", False), ("{sv}", False), ("a{vs}", False), ("a{(i)s}", False), ("a{s}", False),
    ("a{}", False), ("a{sss}", False), ("(a{sv)", False), ("a{sv", False), ("a(i}", False),
    ("a" * 33 + "i", False), ("(" * 33 + "i" + ")" * 33, False),
    ("a{s" + "(" * 32 + "i" + ")" * 32 + "}", False), ("(" + "i" * 255 + ")", False),
]

# ---------------------------------------------------------------------------------------------
# Names (D-Bus specification, "Valid Names").

NAME_ELEMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def interface_name_problem(name):
    if len(name) > 255:
        return "longer than 255 bytes"
    parts = name.split(".")
    if len(parts) < 2:
        return "needs at least two elements"
    for p in parts:
        if not NAME_ELEMENT_RE.match(p):
            return "bad element %r" % p
    return None


def member_name_problem(name):
    if len(name) > 255:
        return "longer than 255 bytes"
    if not NAME_ELEMENT_RE.match(name):
        return "not [A-Za-z_][A-Za-z0-9_]*"
    return None


# ---------------------------------------------------------------------------------------------

class Result:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, problem):
        """Count one check; print problem when it failed. Returns ok."""
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(problem)
        return ok


ALLOWED = {
    "node": ({"name"}, {"interface", "node"}),
    "interface": ({"name"}, {"method", "signal", "property", "annotation"}),
    "method": ({"name"}, {"arg", "annotation"}),
    "signal": ({"name"}, {"arg", "annotation"}),
    "property": ({"name", "type", "access"}, {"annotation"}),
    "arg": ({"name", "type", "direction"}, {"annotation"}),
    "annotation": ({"name", "value"}, set()),
}


def check_structure(res, where, el):
    """Only introspection elements and attributes, recursively (a DTD check, without the DTD)."""
    attrs, children = ALLOWED.get(el.tag, (None, None))
    if attrs is None:
        res.check(False, "%s: unknown element <%s>" % (where, el.tag))
        return
    extra = sorted(set(el.attrib) - attrs)
    res.check(not extra, "%s: <%s> has unknown attributes %s" % (where, el.tag, extra))
    for child in el:
        if child.tag not in children:
            res.check(False, "%s: <%s> inside <%s>" % (where, child.tag, el.tag))
        else:
            check_structure(res, where, child)
    text = (el.text or "").strip()
    res.check(not text, "%s: text inside <%s>: %r" % (where, el.tag, text[:40]))


def annotations(el):
    return {a.get("name"): a.get("value") for a in el.findall("annotation")}


def check_signature(res, where, sig):
    if sig is None:
        res.check(False, "%s: no type" % where)
        return
    problem = signature_problem(sig)
    res.check(problem is None, "%s: invalid type signature %r: %s" % (where, sig, problem))


def check_order(res, where, kind, found, expected):
    common = [n for n in found if n in expected]
    want = [n for n in expected if n in found]
    res.check(common == want, "%s: %s not in spec order: %s, spec: %s"
              % (where, kind, ", ".join(common), ", ".join(want)))


def check_members(res, iface, el, spec):
    where = iface

    # Duplicates, names.
    for kind in ("property", "method", "signal"):
        names = [m.get("name") for m in el.findall(kind)]
        for n in sorted(set(x for x in names if names.count(x) > 1 and x is not None)):
            res.check(False, "%s: %s %s declared twice" % (where, kind, n))
        for n in names:
            if n is None:
                res.check(False, "%s: a <%s> without a name" % (where, kind))
            else:
                p = member_name_problem(n)
                res.check(p is None, "%s: %s name %r: %s" % (where, kind, n, p))
        for a in el.findall("annotation"):
            res.check(False, "%s: unexpected interface annotation %s" % (where, a.get("name")))

    # Properties.
    props = {p.get("name"): p for p in el.findall("property")}
    want = [p[0] for p in spec["properties"]]
    for name, typ, access, annots in spec["properties"]:
        w = "%s.%s" % (iface, name)
        p = props.get(name)
        if not res.check(p is not None, "%s: property missing" % w):
            continue
        check_signature(res, "%s: property" % w, p.get("type"))
        res.check(p.get("type") == typ, "%s: property type %r, spec %r" % (w, p.get("type"), typ))
        res.check(p.get("access") == access,
                  "%s: property access %r, spec %r" % (w, p.get("access"), access))
        res.check(annotations(p) == annots,
                  "%s: annotations %s, spec %s" % (w, annotations(p), annots))
    for name in props:
        res.check(name in want, "%s.%s: property not in the spec" % (iface, name))
    check_order(res, where, "properties", list(props), want)

    # Methods.
    methods = {m.get("name"): m for m in el.findall("method")}
    want = [m[0] for m in spec["methods"]]
    for name, args in spec["methods"]:
        w = "%s.%s()" % (iface, name)
        m = methods.get(name)
        if not res.check(m is not None, "%s: method missing" % w):
            continue
        got = [(a.get("name"), a.get("type"), a.get("direction") or "in")
               for a in m.findall("arg")]
        for a in m.findall("arg"):
            check_signature(res, "%s: arg %s" % (w, a.get("name")), a.get("type"))
            res.check(a.get("direction") in ("in", "out"),
                      "%s: arg %s: direction %r, want explicit \"in\" or \"out\""
                      % (w, a.get("name"), a.get("direction")))
        res.check(got == args, "%s: args %s, spec %s" % (w, fmt_args(got), fmt_args(args)))
        res.check(annotations(m) == {}, "%s: unexpected annotations %s" % (w, annotations(m)))
    for name in methods:
        res.check(name in want, "%s.%s(): method not in the spec" % (iface, name))
    check_order(res, where, "methods", list(methods), want)

    # Signals.
    signals = {s.get("name"): s for s in el.findall("signal")}
    want = [s[0] for s in spec["signals"]]
    for name, args in spec["signals"]:
        w = "%s::%s" % (iface, name)
        s = signals.get(name)
        if not res.check(s is not None, "%s: signal missing" % w):
            continue
        got = [(a.get("name"), a.get("type")) for a in s.findall("arg")]
        for a in s.findall("arg"):
            check_signature(res, "%s: arg %s" % (w, a.get("name")), a.get("type"))
            res.check(a.get("direction") in (None, "out"),
                      "%s: arg %s: signal args cannot be direction %r"
                      % (w, a.get("name"), a.get("direction")))
        res.check(got == args, "%s: args %s, spec %s" % (w, fmt_args(got), fmt_args(args)))
        res.check(annotations(s) == {}, "%s: unexpected annotations %s" % (w, annotations(s)))
    for name in signals:
        res.check(name in want, "%s::%s: signal not in the spec" % (iface, name))
    check_order(res, where, "signals", list(signals), want)

    # Arguments: no annotations expected anywhere, every arg named.
    for kind in ("method", "signal"):
        for m in el.findall(kind):
            for a in m.findall("arg"):
                res.check(a.get("name"), "%s.%s: an arg without a name" % (iface, m.get("name")))
                res.check(not a.findall("annotation"), "%s.%s: arg %s has annotations"
                          % (iface, m.get("name"), a.get("name")))


def fmt_args(args):
    return "(" + ", ".join(" ".join(str(x) for x in reversed(a)) for a in args) + ")"


def read_doctype(data):
    """(name, public id, system id) of the DOCTYPE, via expat (which fetches nothing)."""
    found = []
    p = xml.parsers.expat.ParserCreate()
    p.StartDoctypeDeclHandler = lambda name, sysid, pubid, internal: \
        found.append((name, pubid, sysid))
    p.Parse(data, True)
    return found[0] if found else None


def check_file(res, path, seen):
    where = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        res.check(False, "%s: cannot read: %s" % (path, e.strerror))
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        res.check(False, "%s: not UTF-8: %s" % (where, e))
        return
    try:
        doctype = read_doctype(data)
        root = ET.fromstring(data)
    except (xml.parsers.expat.ExpatError, ET.ParseError) as e:
        res.check(False, "%s: not well-formed XML: %s" % (where, e))
        return
    res.check(True, "")

    res.check(doctype == ("node", DOCTYPE_PUBLIC, DOCTYPE_SYSTEM),
              "%s: DOCTYPE %s, want node PUBLIC \"%s\" \"%s\""
              % (where, doctype, DOCTYPE_PUBLIC, DOCTYPE_SYSTEM))
    if not res.check(root.tag == "node", "%s: root element <%s>, want <node>" % (where, root.tag)):
        return
    check_structure(res, where, root)
    res.check(not root.findall("node"), "%s: child <node>s in an interface file" % where)
    ifaces = root.findall("interface")
    if not res.check(len(ifaces) == 1, "%s: %d <interface>s, want exactly one"
                     % (where, len(ifaces))):
        return
    el = ifaces[0]
    name = el.get("name") or ""
    p = interface_name_problem(name)
    if not res.check(p is None, "%s: interface name %r: %s" % (where, name, p)):
        return
    res.check(where == name + ".xml", "%s: file name should be %s.xml" % (where, name))
    if not res.check(name not in seen, "%s: interface %s already in %s"
                     % (where, name, seen.get(name))):
        return
    seen[name] = where
    spec = SPEC.get(name)
    if not res.check(spec is not None, "%s: interface %s is not in SPEC §5" % (where, name)):
        return
    check_members(res, name, el, spec)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print("usage: %s FILE.xml..." % argv[0], file=sys.stderr)
        return 2
    res = Result()
    for sig, valid in SIGNATURE_SELF_TEST:
        problem = signature_problem(sig)
        res.check((problem is None) == valid, "signature validator: %r judged %s, should be %s"
                  % (sig, "valid" if problem is None else "invalid (%s)" % problem,
                     "valid" if valid else "invalid"))
    seen = {}
    for path in argv[1:]:
        check_file(res, path, seen)
    for name in SPEC:
        res.check(name in seen, "%s: no XML file declares this interface" % name)
    print("%d passed, %d failed" % (res.passed, res.failed))
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
