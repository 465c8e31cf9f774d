package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a configuration, located by its key path
// (for example "bootstrap.dcs.ttl").
type Problem struct {
	Path    string
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is the error Load, Parse and Validate return: every problem
// found, one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// AsProblems returns the problems inside err, or nil.
func AsProblems(err error) Problems {
	var ps Problems
	if errors.As(err, &ps) {
		return ps
	}
	return nil
}

// problems collects Problems while decoding and validating.
type problems struct{ list Problems }

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return p.list
}

// Load reads the file at path, applies PGHA_* environment overrides from
// the process environment, fills defaults and validates the result.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, Problems{{Message: fmt.Sprintf("cannot read config file: %v", err)}}
	}
	return Parse(data, os.Environ())
}

// Parse decodes YAML, applies PGHA_* overrides from env (KEY=VALUE
// strings), fills defaults and validates. The error, if any, is Problems.
func Parse(data []byte, env []string) (Config, error) {
	c := Default()
	var p problems
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		p.add("", "not valid YAML: %s", cleanYAMLError(err))
		return c, p.err()
	}
	if len(root.Content) > 0 {
		decodeNode(&p, "", root.Content[0], reflect.ValueOf(&c).Elem())
	}
	applyEnv(&p, &c, env)
	c.fillDerived()
	// Validate even after decode problems so that one run names them all.
	p.list = append(p.list, AsProblems(c.Validate())...)
	return c, p.err()
}

var yamlLinePrefix = regexp.MustCompile(`^yaml: (unmarshal errors:\n\s*)?`)

func cleanYAMLError(err error) string {
	return strings.TrimSpace(yamlLinePrefix.ReplaceAllString(err.Error(), ""))
}

// decodeNode decodes n into v, walking structs itself so that unknown keys
// and type errors are reported with their full key path; every other kind
// of field is decoded by yaml.v3 (which calls Duration and Size decoders).
func decodeNode(p *problems, path string, n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Kind() != reflect.Struct {
		if n.Tag == "!!null" {
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			p.add(path, "%s", typeMessage(err, v.Type()))
		}
		return
	}
	if n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.add(path, "want a mapping of keys, got %s %q", kindName(n), n.Value)
		return
	}
	fields := structFields(v.Type())
	rest := inlineMap(v)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		sub := joinPath(path, key)
		idx, ok := fields[key]
		if !ok && rest.IsValid() {
			// A struct with an inline map (tags) keeps the keys it does
			// not know instead of refusing them.
			var x any
			if err := val.Decode(&x); err != nil {
				p.add(sub, "%s", cleanYAMLError(err))
				continue
			}
			if rest.IsNil() {
				rest.Set(reflect.MakeMap(rest.Type()))
			}
			rest.SetMapIndex(reflect.ValueOf(key), reflect.ValueOf(&x).Elem())
			continue
		}
		if !ok {
			p.add(sub, "unknown key%s", suggest(key, fields))
			continue
		}
		decodeNode(p, sub, val, v.Field(idx))
	}
}

// inlineMap returns the struct's `yaml:",inline"` map field, if any.
func inlineMap(v reflect.Value) reflect.Value {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("yaml") == ",inline" && t.Field(i).Type.Kind() == reflect.Map {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

func typeMessage(err error, t reflect.Type) string {
	msg := cleanYAMLError(err)
	// yaml.v3 says "line 3: cannot unmarshal !!str `abc` into int".
	if i := strings.Index(msg, "cannot unmarshal "); i >= 0 {
		rest := msg[i+len("cannot unmarshal "):]
		if j := strings.Index(rest, " into "); j >= 0 {
			return fmt.Sprintf("wrong type: got %s, want %s", strings.TrimPrefix(rest[:j], "!!"), friendlyType(t))
		}
	}
	return msg
}

func friendlyType(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(Duration(0)):
		return "a duration such as 10s"
	case reflect.TypeOf(Size(0)):
		return "a size such as 1MB"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map:
		return "a mapping"
	case reflect.Pointer:
		return friendlyType(t.Elem())
	}
	return t.String()
}

// structFields maps yaml key -> field index for t.
func structFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// suggest names the closest known key when one is near the typo.
func suggest(key string, fields map[string]int) string {
	best, bestD := "", 3
	for k := range fields {
		if d := editDistance(key, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > 2 {
		names := make([]string, 0, len(fields))
		for k := range fields {
			names = append(names, k)
		}
		sort.Strings(names)
		return " (known keys: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// applyEnv overrides keys from PGHA_<PATH> variables, where PATH is the key
// path upper-cased with dots as underscores: PGHA_POSTGRESQL_DATA_DIR,
// PGHA_BOOTSTRAP_DCS_TTL, PGHA_ETCD_ENDPOINTS (comma-separated). Unknown
// PGHA_ variables are reported, so a typo does not pass silently.
func applyEnv(p *problems, c *Config, env []string) {
	leaves := map[string]string{}
	collectLeaves("", reflect.TypeOf(*c), leaves)
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "PGHA_") {
			continue
		}
		path, known := leaves[name]
		if !known {
			p.add(name, "unknown environment override (PGHA_ variables name a key path, e.g. PGHA_POSTGRESQL_DATA_DIR)")
			continue
		}
		node := &yaml.Node{Kind: yaml.ScalarNode, Value: val}
		target := fieldByPath(reflect.ValueOf(c).Elem(), path)
		if target.Kind() == reflect.Slice && target.Type().Elem().Kind() == reflect.String {
			var items []string
			for _, s := range strings.Split(val, ",") {
				if s = strings.TrimSpace(s); s != "" {
					items = append(items, s)
				}
			}
			target.Set(reflect.ValueOf(items))
			continue
		}
		if err := node.Decode(target.Addr().Interface()); err != nil {
			p.add(name, "%s", typeMessage(err, target.Type()))
		}
	}
}

func collectLeaves(path string, t reflect.Type, out map[string]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		sub := joinPath(path, name)
		ft := f.Type
		isScalarStruct := ft == reflect.TypeOf(Duration(0)) || ft == reflect.TypeOf(Size(0))
		if ft.Kind() == reflect.Struct && !isScalarStruct {
			collectLeaves(sub, ft, out)
			continue
		}
		switch ft.Kind() {
		case reflect.Map, reflect.Interface:
			continue
		case reflect.Slice:
			if ft.Elem().Kind() != reflect.String {
				continue
			}
		}
		out["PGHA_"+strings.ToUpper(strings.ReplaceAll(sub, ".", "_"))] = sub
	}
}

func fieldByPath(v reflect.Value, path string) reflect.Value {
	for _, seg := range strings.Split(path, ".") {
		v = v.Field(structFields(v.Type())[seg])
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	return v
}
