#!/usr/bin/env python3
"""Makes IDM x-simple-encryption values with Python's `cryptography`, independently of ferridm's
decryptor, for its tests: HKDF-SHA256 from the keystore key (a random 16-byte salt; info "AES"
for the AES key, "HmacSHA256" for a 32-byte MAC key), AES/CBC/PKCS5Padding over the value's
JSON text, and a MAC of HMAC-SHA256 over the other fields in name order, cut to 16 bytes.
`--legacy` makes the form IDM wrote before it had salts and MACs (the key used as is).

    make_vectors.py KEY_BASE64 ALIAS JSON_VALUE [--legacy]
"""
import base64
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


def hkdf_extract(salt: bytes, key: bytes) -> bytes:
    mac = hmac.HMAC(salt, hashes.SHA256())
    mac.update(key)
    return mac.finalize()


def expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def encrypt(key: bytes, alias: str, value, legacy: bool) -> dict:
    iv = os.urandom(16)
    if legacy:
        aes_key = key
    else:
        salt = os.urandom(16)
        prk = hkdf_extract(salt, key)
        aes_key = expand(prk, b"AES", len(key))
        mac_key = expand(prk, b"HmacSHA256", 32)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(value).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    data = encryptor.update(plain) + encryptor.finalize()
    fields = {
        "cipher": "AES/CBC/PKCS5Padding",
        "key": alias,
        "data": base64.b64encode(data).decode(),
        "iv": base64.b64encode(iv).decode(),
    }
    if not legacy:
        fields["salt"] = base64.b64encode(salt).decode()
        mac = hmac.HMAC(mac_key, hashes.SHA256())
        for name in sorted(fields):
            mac.update(name.encode())
            mac.update(fields[name].encode())
        fields["mac"] = base64.b64encode(mac.finalize()[:16]).decode()
    return {"$crypto": {"type": "x-simple-encryption", "value": fields}}


if __name__ == "__main__":
    key_b64, alias, value = sys.argv[1:4]
    print(json.dumps(encrypt(base64.b64decode(key_b64), alias, json.loads(value), "--legacy" in sys.argv)))
