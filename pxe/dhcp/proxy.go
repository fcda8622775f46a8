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
	bf, name, ok := netbootFile(log, req, p.Hosts, p.Boot)
	if !ok {
		return nil
	}
	reply, err := newReply(req, mt, p.Boot.Server)
	if err != nil {
		log.Error("dhcp: building reply", "err", err)
		return nil
	}
	withBoot(reply, req, p.Boot, bf)
	log.Info("dhcp: proxy "+mt.String(), "machine", name, "file", bf.Name)
	return reply
}

// netbootFile decides whether a request is a netboot the gate should
// serve, logging why not, and picks the boot file; name is the plan
// machine's. The client's attributes go into the few log calls that need
// them rather than into a derived logger: that would cost two handler
// clones on every answer, the common path that logs none of them.
func netbootFile(log *slog.Logger, req *dhcpv4.DHCPv4, hosts Hosts, boot Boot) (bf BootFile, name string, ok bool) {
	c := Classify(req)
	if !c.Netboot() {
		log.Debug("dhcp: not a netboot client", "vendor", c.Vendor)
		return BootFile{}, "", false
	}
	h, known := hosts.Host(req.ClientHWAddr)
	if !known {
		log.Warn("dhcp: netboot from a MAC not in the plan: not booted", "vendor", c.Vendor, "ipxe", c.IPXE)
		return BootFile{}, "", false
	}
	if !h.Netboot {
		log.Info("dhcp: machine is never netbooted", "vendor", c.Vendor, "ipxe", c.IPXE, "machine", h.Name, "reason", h.Reason)
		return BootFile{}, h.Name, false
	}
	bf, err := boot.File(c)
	if err != nil {
		lvl := slog.LevelError
		if errors.Is(err, ErrUnsupportedArch) {
			lvl = slog.LevelWarn
		}
		log.Log(context.Background(), lvl, "dhcp: no boot file", "vendor", c.Vendor, "ipxe", c.IPXE, "machine", h.Name, "err", err)
		return BootFile{}, h.Name, false
	}
	return bf, h.Name, true
}
