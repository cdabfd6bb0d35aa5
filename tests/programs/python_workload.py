# Allocation-heavy Python workload; prints deterministic checksums so the
# preloaded run can be compared with the reference. No set iteration (its order
# depends on PYTHONHASHSEED), no id()/addresses in the output.
import hashlib
import json
import math

h = hashlib.sha256()

def emit(label, value):
    s = f"{label} {value}"
    h.update(s.encode())
    print(s)

# Many small dict entries and strings: pymalloc arenas + frequent resizes.
d = {f"key{i}": [i, str(i) * (i % 7), i * i] for i in range(200_000)}
emit("dict", sum(v[2] for v in d.values()) % 1_000_003)
for i in range(0, 200_000, 3):
    del d[f"key{i}"]
emit("dict_after_del", len(d))

# Lists of mixed objects, sorting, slicing.
lst = [(i * 7919) % 100_003 for i in range(300_000)]
lst.sort()
emit("sorted", sum(lst[::1000]))
nested = [[str(j) for j in range(i % 50)] for i in range(20_000)]
emit("nested", sum(len("".join(x)) for x in nested))

# Big ints: buffers well beyond pymalloc's 512-byte limit go to malloc.
f = math.factorial(1500)  # str() of >4300 digits is refused by default
emit("factorial_digits", len(str(f)))
p = pow(3, 200_000) % (10**50 + 151)
emit("pow_mod", p)

# Large strings built and torn down.
big = "".join(chr(65 + (i % 26)) for i in range(1_000_000))
emit("big_str", big.count("XYZ"))
parts = big.split("A")
emit("split", len(parts))

# JSON round trip of a nested structure.
doc = {"items": [{"id": i, "name": f"item-{i}", "tags": [f"t{j}" for j in range(i % 10)],
                  "price": i * 1.25} for i in range(30_000)]}
text = json.dumps(doc, sort_keys=True)
back = json.loads(text)
emit("json_len", len(text))
emit("json_eq", back == doc)

# bytearray growth (realloc path).
ba = bytearray()
for i in range(100_000):
    ba += bytes([i & 0xFF]) * (i % 13)
emit("bytearray", hashlib.sha256(ba).hexdigest()[:16])

print("checksum", h.hexdigest())
