package config

import "time"

// Watchdog configures the Linux watchdog device the fence keeper holds
// while this node leads, as Patroni's watchdog section: when the keeper
// itself cannot run (a kernel-level hang), the device resets the machine
// before the leader lease can expire.
type Watchdog struct {
	// Mode is off, automatic (use the device when it can be opened) or
	// required (a node whose device cannot be armed never leads).
	Mode string `yaml:"mode" json:"mode"`
	// Device is the watchdog device, /dev/watchdog by default.
	Device string `yaml:"device" json:"device"`
	// SafetyMargin is how long before the lease can expire the device
	// fires: its timeout is ttl - safety_margin.
	SafetyMargin Duration `yaml:"safety_margin" json:"safety_margin"`
}

// DefaultWatchdog is Patroni's default: automatic, /dev/watchdog, 5 s.
func DefaultWatchdog() Watchdog {
	return Watchdog{Mode: "automatic", Device: "/dev/watchdog", SafetyMargin: Duration(5 * time.Second)}
}

func (w Watchdog) validate(p *problems, ttl time.Duration) {
	switch w.Mode {
	case "off", "automatic", "required":
	default:
		p.add("watchdog.mode", "%q is not off, automatic or required", w.Mode)
	}
	if w.Mode != "off" && w.Device == "" {
		p.add("watchdog.device", "missing: name the watchdog device (/dev/watchdog) or set watchdog.mode: off")
	}
	if w.SafetyMargin.D() < 0 {
		p.add("watchdog.safety_margin", "%s is negative", w.SafetyMargin.D())
	} else if w.Mode != "off" && ttl > 0 && ttl-w.SafetyMargin.D() < time.Second {
		p.add("watchdog.safety_margin", "%s leaves the watchdog under 1 s of timeout with ttl %s: lower it or raise bootstrap.dcs.ttl", w.SafetyMargin.D(), ttl)
	}
}
