package appliance

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/kilnlab/kiln/image/payload"
	"github.com/kilnlab/kiln/pxe"
)

// The last phases: WireGuard (when the profile has it), then the netboot
// service, which runs until the gate powers off.

func (a *Appliance) wireguard(ctx context.Context) error {
	if a.cfg.WireGuard == nil {
		return fmt.Errorf("not in this build: %w", ErrSkipped)
	}
	return a.cfg.WireGuard(ctx, &a.payload, a.log.With("svc", "wireguard"))
}

// serve runs the netboot service; it returns only when ctx ends or the
// service fails (then the phase is retried, like any other).
func (a *Appliance) serve(ctx context.Context) error {
	cfg := pxe.Config{
		Interface:    a.iface,
		Plan:         a.payload.Plan,
		BundleDir:    filepath.Join(a.payload.Dir, payload.BundleDir),
		StateDir:     a.path(PermDir, "state"),
		SecretsDir:   filepath.Join(a.payload.Dir, payload.SecretsDir),
		Logger:       a.log,
		Address:      a.addr.Addr(),
		UEFIBootFile: a.cfg.UEFIBootFile,
		Ready: func(url string) {
			a.con.printf("KILN-GATE-SERVING addr=%s http=%s boot=%.1f", a.addr.Addr(), url, a.sys.SinceBoot().Seconds())
		},
	}
	err := a.cfg.Serve(ctx, cfg)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		err = errors.New("netboot service stopped")
	}
	return err
}
