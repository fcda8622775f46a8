package dhcp

import (
	"context"
	"errors"
	"log/slog"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Proxy answers netboot clients beside another DHCP server.
type Proxy struct {
	Hosts Hosts
	Boot  Boot
}

// Reply implements Handler: DISCOVER -> OFFER; REQUEST -> ACK when sent to
// 4011 or naming the gate; INFORM on 4011 -> ACK. Never an address.
func (p *Proxy) Reply(log *slog.Logger, req *dhcpv4.DHCPv4, via Via) *dhcpv4.DHCPv4 {
	var mt dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		// On 67 a REQUEST is the client taking the real server's offer:
		// not ours to answer unless it names the gate.
		if _, us := fromUs(req, p.Boot.Server); via != ViaProxy && !us {
			return nil
		}
		mt = dhcpv4.MessageTypeAck
	case dhcpv4.MessageTypeInform:
		if via != ViaProxy {
			return nil
		}
		mt = dhcpv4.MessageTypeAck
	default:
		return nil
	}
	bf, ok := netbootFile(log, req, p.Hosts, p.Boot)
	if !ok {
		return nil
	}
	reply, err := newReply(req, mt, p.Boot.Server)
	if err != nil {
		log.Error("dhcp: building reply", "err", err)
		return nil
	}
	withBoot(reply, req, p.Boot, bf)
	log.Info("dhcp: proxy "+mt.String(), "file", bf.Name)
	return reply
}

// netbootFile decides whether a request is a netboot the gate should
// serve, logging why not, and picks the boot file.
func netbootFile(log *slog.Logger, req *dhcpv4.DHCPv4, hosts Hosts, boot Boot) (BootFile, bool) {
	c := Classify(req)
	if !c.Netboot() {
		log.Debug("dhcp: not a netboot client", "vendor", c.Vendor)
		return BootFile{}, false
	}
	log = log.With("vendor", c.Vendor, "ipxe", c.IPXE)
	h, known := hosts.Host(req.ClientHWAddr)
	if !known {
		log.Warn("dhcp: netboot from a MAC not in the plan: not booted")
		return BootFile{}, false
	}
	log = log.With("machine", h.Name)
	if !h.Netboot {
		log.Info("dhcp: machine is never netbooted", "reason", h.Reason)
		return BootFile{}, false
	}
	bf, err := boot.File(c)
	if err != nil {
		lvl := slog.LevelError
		if errors.Is(err, ErrUnsupportedArch) {
			lvl = slog.LevelWarn
		}
		log.Log(context.Background(), lvl, "dhcp: no boot file", "err", err)
		return BootFile{}, false
	}
	return bf, true
}
