package faults

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// etcdBinary is Debian's etcd server (package etcd-server).
const etcdBinary = "/usr/bin/etcd"

// EtcdMember is one etcd server process in its own namespace.
type EtcdMember struct {
	Name string
	Host *Host
	proc
}

// ClientURL is the member's client URL on the bridge.
func (m *EtcdMember) ClientURL() string { return "http://" + m.Host.IP + ":2379" }

func (m *EtcdMember) peerURL() string { return "http://" + m.Host.IP + ":2380" }

// newEtcdMembers prepares (does not start) one member per host.
func newEtcdMembers(hosts []*Host, dir, token string) []*EtcdMember {
	var initial []string
	for _, h := range hosts {
		initial = append(initial, h.Name+"=http://"+h.IP+":2380")
	}
	var ms []*EtcdMember
	for _, h := range hosts {
		m := &EtcdMember{Name: h.Name, Host: h}
		m.proc = proc{host: h, name: "etcd " + h.Name, logPath: filepath.Join(dir, h.Name+".log"),
			args: []string{etcdBinary, "--name", h.Name, "--data-dir", filepath.Join(dir, h.Name),
				"--listen-client-urls", m.ClientURL(), "--advertise-client-urls", m.ClientURL(),
				"--listen-peer-urls", m.peerURL(), "--initial-advertise-peer-urls", m.peerURL(),
				"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
				"--initial-cluster-token", token, "--heartbeat-interval", "100", "--election-timeout", "1000",
				// A member cut off and back must not depose the leader with
				// the terms it ran up alone (etcd 3.4 defaults to no pre-vote).
				"--pre-vote",
				"--logger", "zap", "--log-level", "warn"}}
		ms = append(ms, m)
	}
	return ms
}

// etcdClient opens a client to every member, dialling from host (the
// client namespace).
func etcdClient(from *Host, members []*EtcdMember) (*clientv3.Client, error) {
	var eps []string
	for _, m := range members {
		eps = append(eps, m.ClientURL())
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return from.Dial(ctx, "tcp", addr)
		})},
	})
}

// etcdLeader returns the member that is raft leader now (asked of every
// member that answers within 2 s).
func etcdLeader(ctx context.Context, cli *clientv3.Client, members []*EtcdMember) (*EtcdMember, error) {
	ids := map[uint64]*EtcdMember{}
	var leader uint64
	for _, m := range members {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.ClientURL())
		cancel()
		if err != nil {
			continue
		}
		ids[st.Header.MemberId] = m
		if st.Leader != 0 {
			leader = st.Leader
		}
	}
	if m, ok := ids[leader]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("no etcd leader among %d answering members", len(ids))
}

// etcdHealthy reports "" when every member answers a status request and
// agrees on a leader, or what is missing.
func etcdHealthy(ctx context.Context, cli *clientv3.Client, members []*EtcdMember) string {
	leaders := map[uint64]bool{}
	for _, m := range members {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.ClientURL())
		cancel()
		if err != nil {
			return fmt.Sprintf("etcd %s: %v", m.Name, err)
		}
		if st.Leader == 0 {
			return "etcd " + m.Name + " has no leader"
		}
		leaders[st.Leader] = true
	}
	if len(leaders) != 1 {
		return fmt.Sprintf("etcd members name %d leaders", len(leaders))
	}
	return ""
}
