#!/bin/sh
# Generates a SQL workload (schema, ~26k inserts, indexes, joins, group by) and runs
# it with sqlite3 on a file database in a temp dir. Output is fully ORDERed so it is
# deterministic. Pseudo-random values come from an LCG in awk, not rand().
set -eu
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing (the Makefile installs it)" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/cgc-sqlite.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

awk 'function rnd() { seed = (seed * 1103515245 + 12345) % 2147483648; return seed }
BEGIN {
  seed = 42
  print "PRAGMA journal_mode=WAL;"
  print "CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT, city TEXT, note TEXT);"
  print "CREATE TABLE product(id INTEGER PRIMARY KEY, title TEXT, price REAL);"
  print "CREATE TABLE orders(id INTEGER PRIMARY KEY, cust INTEGER, prod INTEGER, qty INTEGER, day TEXT);"
  print "BEGIN;"
  for (i = 1; i <= 5000; i++) {
    note = ""; n = rnd() % 40
    for (j = 0; j < n; j++) note = note sprintf("%c", 97 + rnd() % 26)
    printf "INSERT INTO customer VALUES(%d, %cname%d%c, %ccity%d%c, %c%s%c);\n", i, 39, i, 39, 39, rnd() % 50, 39, 39, note, 39
  }
  for (i = 1; i <= 1000; i++)
    printf "INSERT INTO product VALUES(%d, %cproduct %d%c, %d.%02d);\n", i, 39, i, 39, rnd() % 500, rnd() % 100
  print "COMMIT;"
  print "BEGIN;"
  for (i = 1; i <= 20000; i++)
    printf "INSERT INTO orders VALUES(%d, %d, %d, %d, %c2023-%02d-%02d%c);\n", i, 1 + rnd() % 5000, 1 + rnd() % 1000, 1 + rnd() % 9, 39, 1 + rnd() % 12, 1 + rnd() % 28, 39
  print "COMMIT;"
}' > workload.sql

cat >> workload.sql <<'SQL'
CREATE INDEX orders_cust ON orders(cust);
CREATE INDEX orders_prod_day ON orders(prod, day);
CREATE INDEX customer_city ON customer(city, name);
-- Large sort + temp b-trees: group by over a join.
SELECT c.city, count(*), sum(o.qty), printf('%.2f', sum(o.qty * p.price))
  FROM orders o JOIN customer c ON c.id = o.cust JOIN product p ON p.id = o.prod
  GROUP BY c.city ORDER BY c.city;
SELECT substr(o.day, 1, 7) AS month, count(DISTINCT o.cust), max(o.qty)
  FROM orders o GROUP BY month ORDER BY month;
-- Window functions and a correlated subquery.
SELECT id, name, total FROM (
  SELECT c.id, c.name, sum(o.qty) AS total,
         rank() OVER (ORDER BY sum(o.qty) DESC, c.id) AS r
    FROM customer c JOIN orders o ON o.cust = c.id GROUP BY c.id)
  WHERE r <= 20 ORDER BY r;
SELECT p.id, p.title FROM product p
  WHERE (SELECT count(*) FROM orders o WHERE o.prod = p.id) > 30 ORDER BY p.id;
-- String building (group_concat allocates growing buffers).
SELECT city, length(group_concat(note, ',')) FROM customer GROUP BY city ORDER BY city LIMIT 10;
UPDATE orders SET qty = qty + 1 WHERE day LIKE '2023-0%';
DELETE FROM orders WHERE id % 7 = 0;
SELECT count(*), sum(qty) FROM orders;
VACUUM;
PRAGMA integrity_check;
SQL

sqlite3 test.db < workload.sql
