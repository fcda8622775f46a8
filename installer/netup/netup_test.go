package netup

import (
	"errors"
	"net"
	"testing"
)

func TestFindByMAC(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	ifs := []net.Interface{
		{Name: "lo"},
		{Name: "enp1s0", HardwareAddr: mac("52:54:00:00:00:01")},
		{Name: "enp2s0", HardwareAddr: mac("52:54:00:00:00:02")},
	}
	if got, err := FindByMAC(ifs, "52:54:00:00:00:02"); err != nil || got != "enp2s0" {
		t.Errorf("FindByMAC() = %q, %v", got, err)
	}
	if got, err := FindByMAC(ifs, "52-54-00-00-00-01"); err != nil || got != "enp1s0" {
		t.Errorf("FindByMAC(dashes) = %q, %v", got, err)
	}
	if _, err := FindByMAC(ifs, "52:54:00:00:00:03"); !errors.Is(err, ErrNoNIC) {
		t.Errorf("FindByMAC(absent) = %v", err)
	}
	if _, err := FindByMAC(ifs, "nonsense"); err == nil {
		t.Error("FindByMAC(nonsense) succeeded")
	}
}
