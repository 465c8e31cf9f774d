package main

import (
	"context"
	"fmt"
	"strings"
)

// argShape says what positional arguments a subcommand takes after
// patronictl's cluster name, which pghactl accepts in the same place
// (pghactl restart demo node3) and also leaves out (pghactl restart
// node3), the scope then coming from -c or --scope.
type argShape int

const (
	// clusterOnly: [CLUSTER] (list, switchover, pause, history, ...).
	clusterOnly argShape = iota
	// clusterMembers: [CLUSTER] [MEMBER...] (restart, reload, reinit).
	clusterMembers
	// clusterTarget: [CLUSTER] [MEMBER...] TARGET (flush).
	clusterTarget
)

// takeCluster removes the cluster name from the front of pos. A name
// equal to the configured scope is dropped; with no scope configured it
// becomes the scope, as in patronictl. Any other first argument is a
// member (or flush's target) for the shapes that take one, and an error
// naming both clusters otherwise: a command must never act on a cluster
// the operator did not mean.
func (x *ctl) takeCluster(ctx context.Context, pos []string, shape argShape) ([]string, error) {
	if len(pos) == 0 {
		return pos, nil
	}
	first := pos[0]
	switch {
	case first == x.scope:
		pos = pos[1:]
	case x.scope == "":
		x.scope = first
		pos = pos[1:]
	case shape == clusterOnly:
		return nil, x.otherCluster(first)
	case shape == clusterTarget && len(pos) == 1:
		return pos, nil // pghactl flush switchover
	default:
		v, err := x.view(ctx)
		if err != nil {
			return nil, err
		}
		if _, ok := v.Member(first); !ok {
			names := make([]string, 0, len(v.Members))
			for _, m := range v.Members {
				names = append(names, m.Name)
			}
			return nil, fmt.Errorf("%q is neither the configured cluster %q (scope from -c or --scope) nor one of its members (%s): "+
				"to work on cluster %s, pass --scope %s", first, x.scope, strings.Join(names, ", "), first, first)
		}
		return pos, nil // pghactl restart node3
	}
	if shape == clusterOnly {
		for _, a := range pos {
			if a != x.scope {
				return nil, fmt.Errorf("unexpected argument %q: this command takes only the cluster name", a)
			}
		}
		return nil, nil
	}
	return pos, nil
}

// otherCluster is the error for a cluster name that is not the scope.
func (x *ctl) otherCluster(name string) error {
	return fmt.Errorf("cluster %q is not the configured cluster %q (scope from -c or --scope): to work on %s, pass --scope %s",
		name, x.scope, name, name)
}
