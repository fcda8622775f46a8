package appliance

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// The time phase: /perm/clock saved every SaveClock (the next boot's
// floor), the lab's SNTP server on the gate's address, and the SNTP client
// in the background (the internet may be away for days: the gate serves
// its own clock meanwhile, and the lab still agrees with itself).

const (
	// ntpPort is where the lab asks the gate for the time.
	ntpPort = 123
	// stepMin: smaller offsets are left alone (ntpd's step threshold);
	// the lab's clients discipline themselves.
	stepMin = 128 * time.Millisecond
	// syncRetry paces the client until a server answers, syncEvery after.
	syncRetry = time.Minute
	syncEvery = 15 * time.Minute
)

func (a *Appliance) startSavingClock(ctx context.Context) error {
	perm := a.path(PermDir)
	if err := writeClockFile(perm, a.sys.Now()); err != nil {
		return err
	}
	if a.savingClock {
		return nil
	}
	a.savingClock = true
	a.background(ctx, "save clock", func(ctx context.Context) error {
		t := time.NewTicker(a.cfg.SaveClock)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if err := writeClockFile(perm, a.sys.Now()); err != nil {
					a.log.Error("save clock", "err", err)
				}
			}
		}
	})
	return nil
}

func (a *Appliance) startTimeServer(ctx context.Context) error {
	if a.cfg.Time == nil {
		return fmt.Errorf("no SNTP in this build: %w", ErrSkipped)
	}
	if a.servingTime {
		return nil
	}
	addr := net.JoinHostPort(a.addr.Addr().String(), strconv.Itoa(ntpPort))
	pc, err := a.sys.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return fmt.Errorf("sntp server: %w", err)
	}
	a.servingTime = true
	log := a.log.With("svc", "ntp")
	a.background(ctx, "sntp server", func(ctx context.Context) error { return a.cfg.Time.Serve(ctx, pc, log) })
	a.con.printf("time: serving SNTP on %s", addr)
	return nil
}

func (a *Appliance) startTimeClient(ctx context.Context) error {
	servers := a.payload.Plan.Network.NTP
	if len(servers) == 0 {
		a.con.printf("time: no network.ntp servers: the lab follows the gate's clock")
		return nil
	}
	if a.syncing {
		return nil
	}
	a.syncing = true
	a.background(ctx, "sntp client", func(ctx context.Context) error {
		wait := time.Duration(0)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			wait = syncRetry
			if a.syncOnce(ctx, servers) {
				wait = syncEvery
			}
		}
	})
	return nil
}

// syncOnce asks the servers and steps the clock, never below the floor;
// it reports whether the clock now follows a server.
func (a *Appliance) syncOnce(ctx context.Context, servers []string) bool {
	off, err := a.cfg.Time.Sync(ctx, servers)
	if err != nil {
		a.log.Info("sntp: no answer", "err", err)
		return false
	}
	if off > stepMin || off < -stepMin {
		if err := a.clock.step(a.sys.Now().Add(off)); err != nil {
			a.log.Warn("sntp: not stepping the clock", "offset", off, "err", err)
			return false
		}
		a.con.printf("time: clock stepped by %s from NTP", off.Round(time.Millisecond))
		if err := writeClockFile(a.path(PermDir), a.sys.Now()); err != nil {
			a.log.Error("save clock", "err", err)
		}
	}
	first := !a.synced.Swap(true)
	if first {
		a.log.Info("sntp: synced", "offset", off)
	}
	a.cfg.Time.Synced()
	return true
}
