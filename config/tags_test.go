package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestTagsKeepOthers(t *testing.T) {
	c, err := Parse([]byte(`
scope: s
name: n1
postgresql:
  data_dir: /var/lib/postgresql/15/main
tags:
  nofailover: true
  replicatefrom: n2
  datacenter: east
  rack: 7
`), nil)
	if err != nil && !strings.Contains(err.Error(), "os_user") && !strings.Contains(err.Error(), "bin_dir") {
		t.Fatal(err)
	}
	want := Tags{NoFailover: true, ReplicateFrom: "n2", Other: map[string]any{"datacenter": "east", "rack": 7}}
	if !reflect.DeepEqual(c.Tags, want) {
		t.Fatalf("tags %#v, want %#v", c.Tags, want)
	}
	b, err := json.Marshal(c.Tags)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"datacenter":"east","nofailover":true,"rack":7,"replicatefrom":"n2"}` {
		t.Fatalf("member key tags %s", got)
	}
	var back Tags
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want.Other["rack"] = float64(7) // JSON numbers
	if !reflect.DeepEqual(back, want) {
		t.Fatalf("round trip %#v, want %#v", back, want)
	}
	y, err := yaml.Marshal(c.Tags)
	if err != nil || !strings.Contains(string(y), "datacenter: east") {
		t.Fatalf("yaml %s %v", y, err)
	}
}
