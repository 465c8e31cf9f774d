package convert

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
)

// parseConverted converts a Patroni snippet (with scope, name, etcd3
// and, unless it has a postgresql section, data_dir added) and decodes
// the result as pgha does, validation included when this machine has the
// Postgres programs.
func parseConverted(t *testing.T, in string) (config.Config, string) {
	t.Helper()
	head := "scope: s\nname: n1\netcd3: {hosts: 127.0.0.1:2379}\n"
	if !strings.Contains(in, "postgresql:") {
		head += "postgresql: {data_dir: /var/lib/pg}\n"
	}
	res, err := Convert([]byte(head+in), Options{Hostname: "pg-test"})
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	c, err := config.Parse(withBinDir(t, res.YAML), nil)
	if err != nil {
		if config.CheckBinDir(config.DefaultBinDir) == nil {
			t.Fatalf("the converted file does not validate:\n%v\n--- file:\n%s", err, res.YAML)
		}
		for _, p := range config.AsProblems(err) {
			if p.Path != "postgresql.bin_dir" && p.Path != "postgresql.os_user" {
				t.Fatalf("the converted file does not validate:\n%v\n--- file:\n%s", err, res.YAML)
			}
		}
	}
	return c, notesText(res.Notes)
}

func TestConvertSlots(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		slots map[string]config.Slot
		note  string
	}{
		{"physical", "{a: {type: physical}}", map[string]config.Slot{"a": {Type: "physical"}}, ""},
		{"empty value is physical", "{a: , b: {}, c: 0}", map[string]config.Slot{"a": {Type: "physical"}, "b": {Type: "physical"}, "c": {Type: "physical"}}, ""},
		{"logical", "{a: {type: logical, database: app, plugin: pgoutput}}", map[string]config.Slot{"a": {Type: "logical", Database: "app", Plugin: "pgoutput"}}, ""},
		{"no type with database and plugin is logical", "{a: {database: app, plugin: wal2json}}", map[string]config.Slot{"a": {Type: "logical", Database: "app", Plugin: "wal2json"}}, ""},
		{"no type with a database only is physical", "{a: {database: app}}", map[string]config.Slot{"a": {Type: "physical"}}, "bootstrap.dcs.slots.a: a physical slot has no database or plugin"},
		{"logical without a plugin", "{a: {type: logical, database: app}, b: {type: physical}}", map[string]config.Slot{"b": {Type: "physical"}}, "bootstrap.dcs.slots.a: a logical slot needs a database and a plugin"},
		{"bad type", "{a: {type: Physical}}", nil, `bootstrap.dcs.slots.a.type: "Physical" is not physical or logical`},
		{"bad name", "{Bad-Slot: {type: physical}}", nil, `bootstrap.dcs.slots.Bad-Slot: "Bad-Slot" is not a slot name`},
		{"not a mapping", "{a: yes please}", nil, `bootstrap.dcs.slots.a: want a mapping`},
		{"other keys", "{a: {type: physical, cluster_type: any}}", map[string]config.Slot{"a": {Type: "physical"}}, "bootstrap.dcs.slots.a.cluster_type: pgha has no such setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, notes := parseConverted(t, "bootstrap: {dcs: {slots: "+tt.in+"}}\n")
			if !reflect.DeepEqual(c.Bootstrap.DCS.Slots, tt.slots) {
				t.Errorf("slots = %#v, want %#v", c.Bootstrap.DCS.Slots, tt.slots)
			}
			if tt.note == "" && notes != "" || !strings.Contains(notes, tt.note) {
				t.Errorf("notes = %q, want %q", notes, tt.note)
			}
		})
	}
}

func TestConvertIgnoreSlots(t *testing.T) {
	c, notes := parseConverted(t, `bootstrap:
  dcs:
    ignore_slots:
      - {name: debezium, type: logical, database: app, plugin: pgoutput}
      - {plugin: wal2json}
      - {type: physical}
      - {}
      - {type: other}
      - {name: x, failover: true}
      - just_a_name
`)
	want := []config.IgnoreSlot{{Name: "debezium", Type: "logical", Database: "app", Plugin: "pgoutput"},
		{Plugin: "wal2json"}, {Type: "physical"}, {Name: "x"}}
	if !reflect.DeepEqual(c.Bootstrap.DCS.IgnoreSlots, want) {
		t.Errorf("ignore_slots = %#v, want %#v", c.Bootstrap.DCS.IgnoreSlots, want)
	}
	for _, n := range []string{"bootstrap.dcs.ignore_slots[3]: matches every slot", `bootstrap.dcs.ignore_slots[4].type: "other"`,
		"bootstrap.dcs.ignore_slots[5].failover: pgha has no such setting", "bootstrap.dcs.ignore_slots[6]: want a mapping"} {
		if !strings.Contains(notes, n) {
			t.Errorf("notes lack %q:\n%s", n, notes)
		}
	}
}
