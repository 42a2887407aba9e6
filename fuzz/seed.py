#!/usr/bin/env python3
"""Regenerates the seed corpora in fuzz/corpus/<target>/ from the repository's test cases and
shipped configuration: string literals and json!(...) blocks of the unit tests next to each
parser, query parameters and headers of the HTTP tests, and the conf/ files.

Seeds are added (named by their SHA-1, as libFuzzer names its inputs); inputs already in the
corpora, such as those kept from fuzzing runs, stay. Run from anywhere: python3 fuzz/seed.py
"""

import base64
import glob
import hashlib
import hmac
import json
import os
import re
import sys
import urllib.parse

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

STRING = re.compile(r'r(#*)"(.*?)"\1|"((?:[^"\\]|\\.)*)"', re.S)
ESCAPE = re.compile(r'\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|\n\s*|.)', re.S)
SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as file:
        return file.read()


def unescape(text):
    def replace(match):
        escape = match.group(1)
        if escape.startswith("u{"):
            return chr(int(escape[2:-1], 16))
        if escape.startswith("x"):
            return chr(int(escape[1:], 16))
        if escape.startswith("\n"):
            return ""
        return SIMPLE.get(escape, "\\" + escape)

    return ESCAPE.sub(replace, text)


def literals(source):
    """The string literals of Rust source, unescaped (raw strings as written)."""
    for match in STRING.finditer(source):
        yield match.group(2) if match.group(3) is None else unescape(match.group(3))


def tests_of(path):
    """The part of a Rust file from its unit-test module on (all of it for integration tests)."""
    source = read(path)
    index = source.find("mod tests {")
    return source if index < 0 else source[index:]


def json_blocks(source):
    """The json!(...) blocks of Rust source that are JSON text."""
    for match in re.finditer(r"json!\(", source):
        depth, start = 0, match.end()
        for index in range(start, len(source)):
            if source[index] in "([{":
                depth += 1
            elif source[index] in ")]}":
                if depth == 0:
                    try:
                        yield json.loads(source[start:index])
                    except ValueError:
                        pass
                    break
                depth -= 1


def params(source, name):
    """Decoded values of a query parameter in URLs of Rust source."""
    for literal in literals(source):
        for value in re.findall(re.escape(name) + r"=([^&\s\"]*)", literal):
            if "{" not in value:
                yield urllib.parse.unquote_plus(value)


def write(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as file:
        file.write(data)


def jwt(header, claims, key):
    encode = lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    signing_input = encode(header) + "." + encode(claims)
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def main():
    http_tests = "".join(read(path) for path in sorted(glob.glob(os.path.join(ROOT, "tests/http/*.rs"))))

    # request_line: a piece-size byte, a read-size byte, then what the client sends.
    for literal in set(literals(tests_of("server/src/http/wire.rs"))):
        if "HTTP/" in literal or "\r\n" in literal:
            write("request_line", b"\x35\x0f" + literal.encode("utf-8"))

    # filter: the filter unit tests' texts and the HTTP tests' _queryFilter values.
    filters = set(params(http_tests, "_queryFilter"))
    for path in glob.glob(os.path.join(ROOT, "server/core/src/filter/*.rs")):
        filters.update(literal for literal in literals(tests_of(path)) if len(literal) < 400)
    for text in filters:
        write("filter", text)

    # pointer: pointers, _fields and _sortKeys from the unit tests and the HTTP tests.
    pointers = set(params(http_tests, "_fields")) | set(params(http_tests, "_sortKeys"))
    for path in ["server/core/src/pointer.rs", "server/core/src/fields.rs", "server/core/src/query.rs"]:
        pointers.update(literal for literal in literals(tests_of(path)) if len(literal) < 200)
    for text in pointers:
        write("pointer", text)

    # patch: even mode, the document, NUL, the patch body.
    sources = tests_of("server/core/src/patch.rs") + http_tests
    blocks = list(json_blocks(sources))
    patches = [block for block in blocks if isinstance(block, list) and "operation" in json.dumps(block)]
    documents = [block for block in blocks if isinstance(block, dict) and "operation" not in json.dumps(block)]
    documents = documents[:20] or [{}]
    for index, patch in enumerate(patches):
        document = documents[index % len(documents)]
        write("patch", b"\x00" + json.dumps(document).encode() + b"\x00" + json.dumps(patch).encode())

    # sealed_token and session_cookie: tokens a client might send (refused), and contexts and
    # states to seal or issue.
    contexts = [
        "openidm-admin\nopenidm-admin\ninternal/user\ninternal/role/openidm-admin,internal/role/openidm-authorized\nINTERNAL_USER",
        "bjensen\n5f1c\nmanaged/user\ninternal/role/openidm-authorized\nMANAGED_USER\ncredential-query\npassword\nform-1\nform-2",
        "Zoë \"q\"\n\u00e9\nmanaged/user\n\nMANAGED_USER",
    ]
    claims = {"sub": "openidm-admin", "iat": 1, "exp": 4102444800, "idle": 4102444800,
              "ctx": {"authenticationId": "openidm-admin", "authorization": {
                  "id": "openidm-admin", "component": "internal/user",
                  "roles": ["internal/role/openidm-admin"], "moduleId": "INTERNAL_USER"}}}
    forged = [
        jwt({"alg": "HS256", "typ": "JWT"}, claims, b"not the session key"),
        jwt({"alg": "HS256", "typ": "JWT"}, claims, b"").rsplit(".", 1)[0] + ".",
        jwt({"alg": "none"}, claims, b"").rsplit(".", 1)[0] + ".",
        jwt({"alg": "HS512"}, claims, b"x"),
        "", "a.b.c", "....", "eyJ", base64.urlsafe_b64encode(bytes(40)).decode().rstrip("="),
    ]
    for context in contexts:
        write("session_cookie", b"\x01\x10\x20" + context.encode())
        write("sealed_token", b"\x01\x10\x20" + context.encode())
    for token in forged:
        write("session_cookie", b"\x00\x00\x00" + token.encode())
        write("sealed_token", b"\x00\x00\x00" + token.encode())

    # header_value: RFC 5987 values and plain header values from the tests.
    values = {"UTF-8''b%C3%A9a", "utf-8'en'%E2%82%AC", "plain", "iso-8859-1''%E9", "UTF-8''%", "'", "''"}
    values.update(literal for literal in literals(tests_of("server/src/auth/mod.rs")) if "'" in literal)
    values.update(literal for literal in literals(http_tests) if "UTF-8'" in literal or "utf-8'" in literal)
    for value in values:
        write("header_value", value)

    # config: a byte choosing the file (the order of FILES in fuzz_targets/config.rs), then the
    # shipped file, or a JSON block from the loader's unit tests.
    files = re.findall(r'"([^"]+\.json)",', read("fuzz/fuzz_targets/config.rs"))
    for index, name in enumerate(files):
        path = os.path.join(ROOT, "conf", name)
        if os.path.exists(path):
            with open(path, "rb") as file:
                write("config", bytes([index]) + file.read())
    loaders = {"access.rs": "access.json", "audit.rs": "audit.json", "authentication.rs": "authentication.json",
               "email.rs": "external.email.json", "settings.rs": "ferridm.json", "ui.rs": "ui-configuration.json",
               "policy.rs": "policy.json"}
    for module, name in loaders.items():
        for block in json_blocks(tests_of("server/src/config/" + module)):
            if isinstance(block, dict):
                write("config", bytes([files.index(name)]) + json.dumps(block, indent=1).encode())

    for target in sorted(os.listdir(CORPUS)):
        print(f"{target}: {len(os.listdir(os.path.join(CORPUS, target)))} inputs", file=sys.stderr)


if __name__ == "__main__":
    main()
