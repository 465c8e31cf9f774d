package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// table is patronictl's output: pretty (prettytable with the cluster in
// the top border), tsv, json or yaml.
type table struct {
	title   string
	columns []string
	rows    [][]string
	// right lists right-aligned columns.
	right map[string]bool
}

// print writes the table in format fmt.
func (t table) print(w io.Writer, format string) error {
	switch format {
	case "", "pretty", "topology":
		t.pretty(w)
	case "tsv":
		fmt.Fprintln(w, strings.Join(t.columns, "\t"))
		for _, r := range t.rows {
			fmt.Fprintln(w, strings.Join(r, "\t"))
		}
	case "json", "yaml", "yml":
		var out []map[string]any
		for _, r := range t.rows {
			m := map[string]any{}
			for i, c := range t.columns {
				if i < len(r) && r[i] != "" {
					m[c] = jsonish(r[i])
				}
			}
			out = append(out, m)
		}
		if out == nil {
			out = []map[string]any{}
		}
		if format == "json" {
			b, err := json.Marshal(out)
			if err != nil {
				return err
			}
			fmt.Fprintln(w, string(b))
			return nil
		}
		b, err := yaml.Marshal(out)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	default:
		return fmt.Errorf("unknown format %q: use pretty, tsv, json or yaml", format)
	}
	return nil
}

// jsonish keeps numbers numeric and tags ({k: v}) a mapping in json/yaml
// output, as patronictl does.
func jsonish(s string) any {
	if strings.HasPrefix(s, "{") {
		var m map[string]any
		if yaml.Unmarshal([]byte(s), &m) == nil {
			return m
		}
	}
	var n json.Number
	if err := json.Unmarshal([]byte(s), &n); err == nil {
		if i, err := n.Int64(); err == nil {
			return i
		}
	}
	return s
}

// pretty writes prettytable's layout. A cell may hold several lines
// (tags in YAML block style); then every row is ruled off, as
// patronictl's hrule_all does.
func (t table) pretty(w io.Writer) {
	width := func(c string) int {
		n := 0
		for _, l := range strings.Split(c, "\n") {
			n = max(n, utf8.RuneCountInString(l))
		}
		return n
	}
	widths := make([]int, len(t.columns))
	multi := false
	for i, c := range t.columns {
		widths[i] = width(c)
	}
	for _, r := range t.rows {
		for i := range t.columns {
			if i < len(r) {
				widths[i] = max(widths[i], width(r[i]))
				multi = multi || strings.Contains(r[i], "\n")
			}
		}
	}
	var sb strings.Builder
	sb.WriteString("+")
	for _, wd := range widths {
		sb.WriteString(strings.Repeat("-", wd+2) + "+")
	}
	rule := sb.String()
	top := rule
	if t.title != "" {
		title := []rune(t.title)
		r := []rune(rule)
		if len(title) > len(r)-2 {
			title = title[:len(r)-2]
		}
		top = string(r[0]) + string(title) + string(r[1+len(title):])
	}
	line := func(cells []string, align func(i int) bool) {
		height := 1
		split := make([][]string, len(widths))
		for i := range widths {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			split[i] = strings.Split(c, "\n")
			height = max(height, len(split[i]))
		}
		for ln := 0; ln < height; ln++ {
			var b strings.Builder
			b.WriteString("|")
			for i, wd := range widths {
				c := ""
				if ln < len(split[i]) {
					c = split[i][ln]
				}
				pad := wd - utf8.RuneCountInString(c)
				if align(i) {
					b.WriteString(" " + strings.Repeat(" ", pad) + c + " |")
				} else {
					b.WriteString(" " + c + strings.Repeat(" ", pad) + " |")
				}
			}
			fmt.Fprintln(w, b.String())
		}
	}
	fmt.Fprintln(w, top)
	line(t.columns, func(int) bool { return false })
	fmt.Fprintln(w, rule)
	for i, r := range t.rows {
		if multi && i > 0 {
			fmt.Fprintln(w, rule)
		}
		line(r, func(i int) bool { return t.right[t.columns[i]] })
	}
	fmt.Fprintln(w, rule)
}
