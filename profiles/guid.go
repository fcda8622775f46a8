package profiles

import (
	"fmt"

	"github.com/google/uuid"
)

// GUID derives a stable identifier from the lab, machine, disk and optional
// partition names: UUIDv5 of "kiln:<lab>:<machine>:<disk>[:<part>]" in the
// URL namespace (the name reads as a URI of scheme "kiln"). Rebuilding the
// same profile gives the same GUIDs, so PARTUUIDs in boot entries, images
// made at different times and a machine's identity agree. It lives here,
// below plan and roles, because both name partitions by it (plan.GUID is
// this function).
func GUID(lab, machine, disk, part string) string {
	name := fmt.Sprintf("kiln:%s:%s:%s", lab, machine, disk)
	if part != "" {
		name += ":" + part
	}
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(name)).String()
}
