package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseDynamic(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string // each must appear in the error; none: valid
	}{
		{"defaults", `{}`, nil},
		{"null is the defaults", `null`, nil},
		{"Patroni's own key", `{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"failsafe_mode":false,
			"postgresql":{"use_pg_rewind":true,"use_slots":true,"parameters":{"max_connections":100,"wal_level":"replica","pg_stat_statements.max":5000,"Work_Mem":"8MB","archive_mode":true}}}`, nil},
		{"durations as strings", `{"ttl":"20s","loop_wait":"500ms","retry_timeout":"2s"}`, nil},
		{"not JSON", `{"ttl":`, []string{"not valid JSON"}},
		{"empty", ``, []string{"want a JSON object of keys, got nothing"}},
		{"not an object", `[1,2]`, []string{"want a JSON object of keys, got [1,2]"}},
		{"ttl relation", `{"ttl":5,"loop_wait":1,"retry_timeout":3}`, []string{"ttl: 5s is too small for loop_wait 1s and retry_timeout 3s: need ttl >= loop_wait + 2*retry_timeout = 7s"}},
		{"negative ttl", `{"ttl":-10}`, []string{`ttl: bad duration "-10": seconds must be between 0 and 1e9`}},
		{"zero loop_wait", `{"loop_wait":0}`, []string{"loop_wait: 0s is too short: use at least 100ms"}},
		{"huge ttl", `{"ttl":1e9}`, []string{"ttl: 277777h46m40s is out of range: use 0s to 24h0m0s"}},
		{"negative lag", `{"maximum_lag_on_failover":-1}`, []string{`maximum_lag_on_failover: bad size "-1"`}},
		{"wrong type", `{"synchronous_mode":"yes"}`, []string{"synchronous_mode: wrong type: got string, want true or false"}},
		{"wrong nested type", `{"postgresql":{"parameters":["work_mem"]}}`, []string{"postgresql.parameters: wrong type: got array, want a mapping"}},
		{"postgresql not an object", `{"postgresql":5}`, []string{"postgresql: want a JSON object of keys, got 5"}},
		{"bad parameter name", `{"postgresql":{"parameters":{"work mem":"8MB"}}}`, []string{`postgresql.parameters: "work mem" is not a setting name`}},
		{"parameter name with two dots", `{"postgresql":{"parameters":{"a.b.c":1}}}`, []string{`"a.b.c" is not a setting name`}},
		{"parameter name injecting a line", `{"postgresql":{"parameters":{"x = 1\nport":"5"}}}`, []string{`"x = 1\nport" is not a setting name`}},
		{"include directive", `{"postgresql":{"parameters":{"Include":"/etc/shadow"}}}`, []string{`postgresql.parameters.Include: "Include" is a directive that reads other files`}},
		{"newline in value", `{"postgresql":{"parameters":{"work_mem":"8MB'\nport = '1"}}}`, []string{"postgresql.parameters.work_mem: value of work_mem contains the control character U+000A"}},
		{"value is a mapping", `{"postgresql":{"parameters":{"work_mem":{"a":1}}}}`, []string{"postgresql.parameters.work_mem: value is a mapping: write a string, number or boolean"}},
		{"case duplicates", `{"postgresql":{"parameters":{"work_mem":"8MB","WORK_MEM":"16MB"}}}`, []string{"postgresql.parameters.work_mem: names the same setting as WORK_MEM"}},
		{"several problems", `{"ttl":1,"synchronous_mode":1}`, []string{"synchronous_mode: wrong type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDynamic([]byte(tt.json))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				if err := d.Validate(); err != nil {
					t.Fatalf("accepted, but Validate says:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want problems %q, got none (%+v)", tt.want, d)
			}
			if AsProblems(err) == nil {
				t.Fatalf("error is not Problems: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("want a problem containing %q, got:\n%v", w, err)
				}
			}
		})
	}
}

// TestParseDynamicKeepsWhatIsStored: a key that does not validate still
// decodes, so that tools show what is there.
func TestParseDynamicKeepsWhatIsStored(t *testing.T) {
	d, err := ParseDynamic([]byte(`{"ttl":5,"loop_wait":1,"retry_timeout":3,"postgresql":{"parameters":{"work_mem":"8MB"}}}`))
	if err == nil {
		t.Fatal("ttl 5 with retry_timeout 3 accepted")
	}
	if d.TTL.D() != 5*time.Second || d.PostgreSQL.Parameters["work_mem"] != "8MB" || !d.PostgreSQL.UseSlots {
		t.Fatalf("decoded %+v", d)
	}
}

// TestValidateSameMessage: the writers' check (Validate) and the
// reader's (ParseDynamic) say the same thing about the same config.
func TestValidateSameMessage(t *testing.T) {
	d := DefaultDynamic()
	d.TTL = Duration(4 * time.Second)
	d.PostgreSQL.Parameters = map[string]any{"bad name": 1}
	werr := d.Validate()
	b, _ := json.Marshal(d)
	_, rerr := ParseDynamic(b)
	if werr == nil || rerr == nil || werr.Error() != rerr.Error() {
		t.Fatalf("Validate: %v\nParseDynamic: %v", werr, rerr)
	}
}

func TestNodeFileParameters(t *testing.T) {
	tests := []parseCase{
		{"valid", base + "  parameters:\n    work_mem: 8MB\n    shared_preload_libraries: 'pg_stat_statements'\n    pg_stat_statements.max: 100\n    Archive_Mode: on\n", ""},
		{"bad name", base + "  parameters:\n    \"work_mem = '1'\\nport\": 5\n", `postgresql.parameters: "work_mem = '1'\nport" is not a setting name`},
		{"control character", base + "  parameters:\n    work_mem: \"8MB\\u0007\"\n", "postgresql.parameters.work_mem: value of work_mem contains the control character U+0007"},
		{"list value", base + "  parameters:\n    work_mem: [1, 2]\n", "postgresql.parameters.work_mem: value is a list"},
		{"include", base + "  parameters:\n    include_dir: conf.d\n", "postgresql.parameters.include_dir: \"include_dir\" is a directive"},
		{"case duplicates", base + "  parameters:\n    work_mem: 8MB\n    Work_Mem: 9MB\n", "postgresql.parameters.work_mem: names the same setting as Work_Mem"},
		{"bootstrap.dcs", base + "bootstrap:\n  dcs:\n    postgresql:\n      parameters:\n        a.b.c: 1\n", `bootstrap.dcs.postgresql.parameters: "a.b.c" is not a setting name`},
	}
	runParseCases(t, tests)
}

// parseCase is a config file and the problem Parse must report (none
// when want is empty).
type parseCase struct {
	name, yaml, want string
}

func runParseCases(t *testing.T, tests []parseCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), nil)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want a problem containing %q, got:\n%v", tt.want, err)
			}
		})
	}
}

func TestEtcdTLSProblems(t *testing.T) {
	tests := []parseCase{
		{"https with a CA", "scope: demo\nname: node1\netcd:\n  endpoints: [\"https://127.0.0.1:2379\", \"127.0.0.1:2380\"]\n  cacert: /ca.pem\npostgresql:\n  data_dir: /d\n", ""},
		{"http with a CA", "scope: demo\nname: node1\netcd:\n  endpoints: [\"http://127.0.0.1:2379\"]\n  cacert: /ca.pem\npostgresql:\n  data_dir: /d\n", `etcd.endpoints[0]: "http://127.0.0.1:2379" is plain HTTP but etcd.cacert/cert is set`},
		{"embedded with TLS", "scope: demo\nname: node1\netcd:\n  embedded: true\n  cert: /c.pem\n  key: /k.pem\npostgresql:\n  data_dir: /d\n", "etcd.embedded: the embedded etcd serves plain HTTP"},
		{"v2 leader key", "scope: demo\nname: node1\netcd:\n  endpoints: [\"127.0.0.1:2379\"]\n  v2_leader_key: true\npostgresql:\n  data_dir: /d\n", ""},
		{"v2 leader key on the embedded etcd", "scope: demo\nname: node1\netcd:\n  embedded: true\n  v2_leader_key: true\npostgresql:\n  data_dir: /d\n", "etcd.v2_leader_key: the embedded etcd does not serve the v2 API"},
	}
	runParseCases(t, tests)
}

// FuzzParseDynamic: the parser of etcd's config key never panics,
// whatever it accepts passes Validate and is written only as parameters
// pgha can put into postgresql.conf, and the JSON pgha stores for an
// accepted config (CASConfig) is accepted again.
func FuzzParseDynamic(f *testing.F) {
	for _, s := range []string{
		`{}`, `null`, `[]`, `""`, `{"ttl":30,"loop_wait":10,"retry_timeout":10}`,
		`{"ttl":"20s","loop_wait":"500ms","retry_timeout":"2s","maximum_lag_on_failover":"16MB"}`,
		`{"postgresql":{"use_slots":false,"parameters":{"work_mem":"8MB","max_connections":100,"pg_stat_statements.max":1e3,"fsync":false}}}`,
		`{"postgresql":{"parameters":{"x\ny":1,"Include":"/etc/passwd","a":{"b":1},"c":[1],"d":null}}}`,
		`{"ttl":1e9,"loop_wait":1e-9,"master_start_timeout":"8760h"}`,
		`{"synchronous_mode":true,"synchronous_mode_strict":true,"pause":true,"unknown":{"x":1}}`,
		`{"postgresql":5}`, `{"ttl":-1}`, `{"ttl":"1.0000000001"}`,
		`{"ttl":"34135.727263992s"}`, // seconds as float64 lose the last nanosecond
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDynamic(b)
		if err != nil {
			if AsProblems(err) == nil {
				t.Fatalf("error is not Problems: %v", err)
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("ParseDynamic accepted %q, Validate refuses it: %v", b, err)
		}
		for k, v := range d.PostgreSQL.Parameters {
			if err := CheckParameter(k, v); err != nil {
				t.Fatalf("accepted parameter %q: %v", k, err)
			}
			if s := ParameterString(v); strings.ContainsAny(s, "\n\r\x00") {
				t.Fatalf("accepted parameter %q renders as %q", k, s)
			}
		}
		stored, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("encode accepted config: %v", err)
		}
		again, err := ParseDynamic(stored)
		if err != nil {
			t.Fatalf("accepted %q, stored it as %s, which is refused: %v", b, stored, err)
		}
		if b2, _ := json.Marshal(again); string(b2) != string(stored) {
			t.Fatalf("stored %s, read back %s", stored, b2)
		}
	})
}

// TestDurationJSONExact: a duration pgha stores in the config key reads
// back to the nanosecond (a ttl exactly at loop_wait + 2*retry_timeout
// must not turn invalid on its way through etcd).
func TestDurationJSONExact(t *testing.T) {
	for _, ns := range []int64{0, 1, 100e6, 1e9, 1.5e9, 67102240637410, 34135727263992, 69838534161433, int64(maxTiming) - 1} {
		b, err := json.Marshal(Duration(ns))
		if err != nil {
			t.Fatal(err)
		}
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil || int64(back) != ns {
			t.Errorf("%dns: stored as %s, read back as %dns (%v)", ns, b, int64(back), err)
		}
	}
	if b, _ := json.Marshal(Duration(10 * time.Second)); string(b) != "10" {
		t.Errorf("10s is stored as %s, want Patroni's 10", b)
	}
}
