package appliance

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// ErrNoLink means no network interface has the wanted MAC (yet).
var ErrNoLink = errors.New("no interface with that MAC")

// System is everything the phases do to the running kernel, so that the
// phase logic runs in tests without root. Paths are absolute on the
// running system (the appliance joins them to Config.Root first).
type System interface {
	// Mount is mount(2).
	Mount(source, target, fstype string, flags uintptr, data string) error
	// Mounted reports whether target is a mount point.
	Mounted(target string) (bool, error)
	// Mknod makes a block device node.
	Mknod(path string, major, minor uint32) error
	// Now is the wall clock; SetClock steps it (clock_settime).
	Now() time.Time
	SetClock(t time.Time) error
	// SinceBoot is the time since the kernel started (CLOCK_BOOTTIME).
	SinceBoot() time.Duration
	Sethostname(name string) error
	// LinkByMAC names the interface with that MAC, or ErrNoLink.
	LinkByMAC(mac net.HardwareAddr) (string, error)
	LinkUp(name string) error
	// ReplaceAddr sets p on the link (idempotent).
	ReplaceAddr(name string, p netip.Prefix) error
	// ReplaceDefaultRoute points the default route at gw through name.
	ReplaceDefaultRoute(name string, gw netip.Addr) error
	// ListenPacket is net.ListenPacket (the SNTP server's socket).
	ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error)
	// LoadModules loads every module the initramfs carries.
	LoadModules(log *slog.Logger) (int, error)
}
