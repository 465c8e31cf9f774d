package leader

import (
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestWakesLoop(t *testing.T) {
	const prefix = "/service/demo/"
	put := func(key, value string, create bool) *clientv3.Event {
		kv := &mvccpb.KeyValue{Key: []byte(prefix + key), Value: []byte(value), CreateRevision: 5, ModRevision: 9}
		if create {
			kv.ModRevision = 5
		}
		return &clientv3.Event{Type: clientv3.EventTypePut, Kv: kv}
	}
	update := func(key, prev, value string) *clientv3.Event {
		ev := put(key, value, false)
		ev.PrevKv = &mvccpb.KeyValue{Key: ev.Kv.Key, Value: []byte(prev)}
		return ev
	}
	del := &clientv3.Event{Type: clientv3.EventTypeDelete, Kv: &mvccpb.KeyValue{Key: []byte(prefix + "members/n2")}}
	tests := []struct {
		name string
		ev   *clientv3.Event
		want bool
	}{
		{"leader key", put("leader", "n1", false), true},
		{"failover request", put("failover", `{"leader":"n1"}`, true), true},
		{"config change", put("config", `{"ttl":10}`, false), true},
		{"routine status", put("status", `{"optime":1}`, false), false},
		{"routine history", put("history", `[]`, false), false},
		{"routine member update, running", update("members/n1", `{"state":"running","role":"primary","xlog_location":1}`, `{"state":"running","role":"primary","xlog_location":2}`), false},
		{"routine member update, streaming", update("members/n2", `{"state":"streaming","role":"replica"}`, `{"state":"streaming","role":"replica","replay_lsn":7}`), false},
		{"member update without previous value", put("members/n2", `{"state":"streaming","role":"replica"}`, false), true},
		{"replica promoted", update("members/n3", `{"state":"streaming","role":"replica"}`, `{"state":"running","role":"primary"}`), true},
		{"new member", put("members/n3", `{"state":"running"}`, true), true},
		{"member gone", del, true},
		{"primary announces a planned stop", update("members/n1", `{"state":"running","role":"primary"}`, `{"state":"stopping","role":"primary"}`), true},
		{"member crashed", update("members/n1", `{"state":"running","role":"primary"}`, `{"state":"crashed","role":"primary"}`), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wakesLoop(prefix, []*clientv3.Event{tt.ev}); got != tt.want {
				t.Errorf("wakesLoop = %v, want %v", got, tt.want)
			}
		})
	}
}
