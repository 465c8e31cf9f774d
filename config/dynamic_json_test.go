package config

import (
	"encoding/json"
	"testing"
)

func TestEncodeDynamicKeepsUnknownKeys(t *testing.T) {
	prev := []byte(`{"ttl":30,"loop_wait":10,"retry_timeout":10,"check_timeline":true,"pause":true,
		"postgresql":{"use_pg_rewind":true,"pg_hba":["host all all 0.0.0.0/0 md5"],"parameters":{"work_mem":"4MB"}}}`)
	c, err := ParseDynamic(prev)
	if err != nil {
		t.Fatal(err)
	}
	c.Pause = false
	c.PostgreSQL.Parameters = map[string]any{"work_mem": "8MB"}
	b, err := EncodeDynamic(prev, c)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["check_timeline"] != true {
		t.Errorf("check_timeline dropped: %s", b)
	}
	pg := got["postgresql"].(map[string]any)
	if hba, ok := pg["pg_hba"].([]any); !ok || len(hba) != 1 {
		t.Errorf("postgresql.pg_hba dropped: %s", b)
	}
	if _, ok := got["pause"]; ok {
		t.Errorf("pause kept after it was turned off: %s", b)
	}
	if pg["parameters"].(map[string]any)["work_mem"] != "8MB" {
		t.Errorf("new parameters not written: %s", b)
	}
	if back, err := ParseDynamic(b); err != nil || back.TTL != c.TTL {
		t.Fatalf("stored config does not read back: %v", err)
	}
}
