#!/bin/sh
# make_page.sh ROWS — print a large HTML page (a table of ROWS rows, links, entities, nested
# markup) on stdout, the same for the same ROWS (no randomness).
rows=${1:-30000}
awk -v rows="$rows" 'BEGIN {
  print "<html><head><title>cgc w3m check</title></head><body>";
  print "<h1>A generated table</h1><p>Rows: " rows " &amp; some <b>bold</b> &lt;text&gt;.</p>";
  print "<table border=1 cellpadding=2>";
  print "<tr><th>n</th><th>word</th><th>link</th><th>hex</th><th>note</th></tr>";
  x = 12345;
  for (i = 0; i < rows; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    w = ""; for (j = 0; j <= i % 6; j++) w = w "word";
    printf "<tr><td>%d</td><td>%s</td><td><a href=\"p%d.html\">link %d</a></td><td>%x</td><td>%s</td></tr>\n", \
      i, w, i, i, x, (i % 5 == 0) ? "<i>fifth</i> &copy;" : "&nbsp;";
  }
  print "</table><ul>";
  for (i = 0; i < 200; i++) print "<li>item " i " <em>emphasis</em></li>";
  print "</ul></body></html>";
}'
