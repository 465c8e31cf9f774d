package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Validate checks a dynamic configuration wherever it comes from (etcd's
// config key, PATCH/PUT /config, pghactl edit-config, bootstrap.dcs): the
// HA timings (ttl >= loop_wait + 2*retry_timeout, every timing positive
// and at most maxTiming), maximum_lag_on_failover >= 0, and
// postgresql.parameters (CheckParameter). It returns Problems naming each
// bad key, or nil.
func (d DynamicConfig) Validate() error {
	var p problems
	validateDynamic(&p, "", d)
	return p.err()
}

// ParseDynamic decodes etcd's config key (Patroni's JSON: durations as
// seconds or duration strings, sizes as bytes or with a unit) over the
// defaults and validates the result. Keys pgha does not know are ignored
// (a key Patroni wrote may carry more); a known key with a bad value or
// type is a Problem naming it. The decoded configuration is returned even
// with an error, so that tools can show what is stored; the daemon keeps
// its last good configuration instead.
func ParseDynamic(b []byte) (DynamicConfig, error) {
	d := DefaultDynamic()
	var p problems
	decodeJSON(&p, "", json.RawMessage(b), reflect.ValueOf(&d).Elem())
	if len(p.list) == 0 {
		validateDynamic(&p, "", d)
	}
	return d, p.err()
}

// decodeJSON decodes raw into v, walking structs itself so that each
// problem names its key path; unknown keys are skipped.
func decodeJSON(p *problems, path string, raw json.RawMessage, v reflect.Value) {
	if v.Kind() != reflect.Struct {
		if err := json.Unmarshal(raw, v.Addr().Interface()); err != nil {
			p.add(path, "%s", jsonMessage(err, v.Type()))
		}
		return
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		if string(t) == "null" {
			return
		}
		what := "nothing"
		if len(t) > 0 {
			what = fmt.Sprintf("%.40s", t)
		}
		p.add(path, "want a JSON object of keys, got %s", what)
		return
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		p.add(path, "not valid JSON: %v", err)
		return
	}
	fields := jsonFields(v.Type())
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if i, ok := fields[k]; ok {
			decodeJSON(p, joinPath(path, k), m[k], v.Field(i))
		}
	}
}

// jsonFields maps json key -> field index for t.
func jsonFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

func jsonMessage(err error, t reflect.Type) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("wrong type: got %s, want %s", te.Value, friendlyType(t))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "not valid JSON: " + se.Error()
	}
	return err.Error()
}

// maxTiming bounds ttl, loop_wait, retry_timeout and
// master_start_timeout: longer values make no sense for HA and would
// overflow the arithmetic of the timing rule.
const maxTiming = 24 * time.Hour

// validateDynamic checks dynamic configuration; path prefixes problem keys
// (bootstrap.dcs in a file, "" for the etcd config key). The timing rule
// keeps HA rule 1: a leader that misses renewals for retry_timeout twice
// plus one loop must still be able to step down before its lease expires.
func validateDynamic(p *problems, path string, d DynamicConfig) {
	at := func(k string) string { return joinPath(path, k) }
	timingsOK := true
	for _, x := range []struct {
		key string
		d   time.Duration
	}{{"ttl", d.TTL.D()}, {"loop_wait", d.LoopWait.D()}, {"retry_timeout", d.RetryTimeout.D()}, {"master_start_timeout", d.MasterStartTimeout.D()}} {
		if x.d < 0 || x.d > maxTiming {
			p.add(at(x.key), "%s is out of range: use 0s to %s", x.d, maxTiming)
			timingsOK = false
		}
	}
	if !timingsOK {
		return
	}
	if d.LoopWait.D() < 100*time.Millisecond {
		p.add(at("loop_wait"), "%s is too short: use at least 100ms", d.LoopWait.D())
	}
	if d.RetryTimeout.D() < 100*time.Millisecond {
		p.add(at("retry_timeout"), "%s is too short: use at least 100ms", d.RetryTimeout.D())
	}
	if need := d.LoopWait.D() + 2*d.RetryTimeout.D(); d.TTL.D() < need {
		p.add(at("ttl"), "%s is too small for loop_wait %s and retry_timeout %s: need ttl >= loop_wait + 2*retry_timeout = %s (default 10s), or the leader could lose its lease before it notices",
			d.TTL.D(), d.LoopWait.D(), d.RetryTimeout.D(), need)
	} else if d.TTL.D() < 2*time.Second {
		p.add(at("ttl"), "%s is too short: etcd leases need at least 2s (default 10s)", d.TTL.D())
	}
	if d.MaximumLagOnFailover < 0 {
		p.add(at("maximum_lag_on_failover"), "must not be negative")
	}
	if d.MasterStartTimeout.D() > d.TTL.D()*10 {
		p.add(at("master_start_timeout"), "%s is longer than 10*ttl: a crashed primary would block failover that long", d.MasterStartTimeout.D())
	}
	checkParameters(p, at("postgresql.parameters"), d.PostgreSQL.Parameters)
	validateSlots(p, at, d)
}

// paramName is a setting's name as Postgres's configuration-file grammar
// reads it (guc-file.l): an identifier, or two joined by a dot for a
// custom setting such as pg_stat_statements.max. pgha allows ASCII only.
var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// paramDirectives read like settings but pull other files into the
// configuration.
var paramDirectives = map[string]bool{"include": true, "include_if_exists": true, "include_dir": true}

// CheckParameter reports whether name = value can be written into
// postgresql.conf as a setting: the name is an identifier (or two joined
// by a dot) and not an include directive, and the value is a string,
// number or boolean (nil: not set) whose text is valid UTF-8 without
// control characters (Postgres's file grammar has no place for a
// newline). Postgres itself judges whether the setting exists and the
// value is right for it.
func CheckParameter(name string, value any) error {
	if !paramName.MatchString(name) {
		return fmt.Errorf("%q is not a setting name: use letters, digits and _ (and one dot for a custom setting such as pg_stat_statements.max)", name)
	}
	if paramDirectives[strings.ToLower(name)] {
		return fmt.Errorf("%q is a directive that reads other files, not a setting: it cannot be set here", name)
	}
	s, err := parameterText(value)
	if err != nil {
		return err
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("value of %s is not valid UTF-8", name)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("value of %s contains the control character %U: settings are one line of text", name, r)
		}
	}
	return nil
}

// ParameterString renders a setting's value as pgha writes it into
// postgresql.conf: booleans as on/off, numbers without an exponent, nil
// as "".
func ParameterString(v any) string {
	s, err := parameterText(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return s
}

func parameterText(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool:
		if x {
			return "on", nil
		}
		return "off", nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case uint:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case uint32:
		return strconv.FormatUint(uint64(x), 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("value %v is not a number Postgres reads", x)
		}
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case float32:
		return parameterText(float64(x))
	case json.Number:
		return x.String(), nil
	}
	return "", fmt.Errorf("value is a %s: write a string, number or boolean", friendlyKind(v))
}

func friendlyKind(v any) string {
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map, reflect.Struct:
		return "mapping"
	case reflect.Slice, reflect.Array:
		return "list"
	}
	return fmt.Sprintf("%T", v)
}

// checkParameters adds a Problem for each setting CheckParameter refuses
// and for names that differ only in case (Postgres folds them: both
// would set the same setting).
func checkParameters(p *problems, path string, params map[string]any) {
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	seen := map[string]string{}
	for _, k := range names {
		if err := CheckParameter(k, params[k]); err != nil {
			at := joinPath(path, k)
			if !paramName.MatchString(k) {
				at = path // the message quotes the name; keep the path one line
			}
			p.add(at, "%v", err)
			continue
		}
		low := strings.ToLower(k)
		if other, dup := seen[low]; dup {
			p.add(joinPath(path, k), "names the same setting as %s (Postgres ignores case): keep one", other)
			continue
		}
		seen[low] = k
	}
}
