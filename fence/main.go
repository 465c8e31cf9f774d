package fence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// envKeeper carries a keeper's configuration to the process a Client
// starts; its presence makes RunKeeperIfAsked run the keeper.
const envKeeper = "PGHA_FENCE_KEEPER"

type keeperSpec struct {
	Config  KeeperConfig `json:"config"`
	LogFile string       `json:"log_file"`
}

// RunKeeperIfAsked runs the fence keeper and exits the process when this
// process was started as one (by a Client); otherwise it returns at once.
// Call it first thing in main (and in TestMain of tests that run daemons).
func RunKeeperIfAsked() {
	spec, ok := os.LookupEnv(envKeeper)
	if !ok {
		return
	}
	os.Exit(runKeeper(spec))
}

func runKeeper(raw string) int {
	_ = os.Unsetenv(envKeeper)
	var spec keeperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "pgha fence keeper: bad %s: %v\n", envKeeper, err)
		return 2
	}
	out := os.Stderr
	if spec.LogFile != "" {
		// Root writes into a directory Postgres's user owns: never follow
		// a link planted there.
		f, err := os.OpenFile(spec.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			defer f.Close()
			out = f
		}
	}
	log := slog.New(slog.NewTextHandler(out, nil)).With("component", "fence_keeper")
	// Terminal signals never reach it (own session); SIGTERM and SIGINT
	// end it (an operator's choice), SIGHUP is ignored.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := NewKeeper(spec.Config, log).Run(ctx); err != nil {
		log.Error("fence keeper failed", "err", err)
		return 1
	}
	return 0
}
