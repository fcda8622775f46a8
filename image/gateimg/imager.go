package gateimg

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Raspberry Pi Imager, the official tool most Pi owners flash cards with,
// reads a repository of images from a JSON file (`rpi-imager --repo FILE`,
// or its custom repository setting): an os_list of entries, each with the
// compressed image's URL, size and sha256, and the uncompressed image's
// size and sha256, which Imager checks after writing. kiln build writes
// one beside the gate image so that the card can be flashed with Imager as
// well as with kiln flash.

// ImagerListFile is the repository file's name in kiln build's output.
const ImagerListFile = "rpi-imager.json"

// ImagerDevice is Imager's device tag of the Raspberry Pi 4 in 64-bit
// mode, the gate's board and arch.
const ImagerDevice = "pi4-64bit"

// ImagerOS is one entry of an Imager repository (its field names).
type ImagerOS struct {
	Name                string   `json:"name"`
	Description         string   `json:"description"`
	URL                 string   `json:"url"`
	Website             string   `json:"website,omitempty"`
	ExtractSize         int64    `json:"extract_size"`
	ExtractSHA256       string   `json:"extract_sha256"`
	ImageDownloadSize   int64    `json:"image_download_size"`
	ImageDownloadSHA256 string   `json:"image_download_sha256"`
	ReleaseDate         string   `json:"release_date"`
	Devices             []string `json:"devices"`
}

// ImagerList is an Imager repository.
type ImagerList struct {
	OSList []ImagerOS `json:"os_list"`
}

// ImagerOptions name the gate image and say where Imager downloads it.
type ImagerOptions struct {
	Lab, Gate string
	Img, XZ   string // the image and its .xz
	// BaseURL is where the .xz is published (its name is appended);
	// empty means the file itself (file://, absolute).
	BaseURL string
	Release time.Time // the build time
}

// WriteImagerList writes dir/ImagerListFile for the gate image, reading
// the two files for their sizes and sha256.
func WriteImagerList(dir string, o ImagerOptions) error {
	e, err := imagerEntry(o)
	if err != nil {
		return fmt.Errorf("%s: %w", ImagerListFile, err)
	}
	b, err := json.MarshalIndent(ImagerList{OSList: []ImagerOS{e}}, "", "  ")
	if err != nil {
		return err
	}
	return replaceFile(filepath.Join(dir, ImagerListFile), func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

func imagerEntry(o ImagerOptions) (ImagerOS, error) {
	e := ImagerOS{
		Name:        fmt.Sprintf("kiln gate %s (lab %s)", o.Gate, o.Lab),
		Description: fmt.Sprintf("The Raspberry Pi 4 gate of lab %s: it netboots and installs the lab's servers. Built by kiln build; every other setting is in the image.", o.Lab),
		Website:     "https://github.com/kilnlab/kiln",
		ReleaseDate: o.Release.UTC().Format(time.DateOnly),
		Devices:     []string{ImagerDevice},
	}
	u, err := imageURL(o.BaseURL, o.XZ)
	if err != nil {
		return e, err
	}
	e.URL = u
	if e.ExtractSize, e.ExtractSHA256, err = sizeAndSHA256(o.Img); err != nil {
		return e, err
	}
	if e.ImageDownloadSize, e.ImageDownloadSHA256, err = sizeAndSHA256(o.XZ); err != nil {
		return e, err
	}
	return e, nil
}

// imageURL is base/name(xz), or xz's own file:// URL without a base.
func imageURL(base, xz string) (string, error) {
	if base == "" {
		abs, err := filepath.Abs(xz)
		if err != nil {
			return "", err
		}
		return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String(), nil
	}
	u, err := parseBaseURL(base)
	if err != nil {
		return "", err
	}
	return u.JoinPath(filepath.Base(xz)).String(), nil
}

// CheckBaseURL reports whether base can be an ImagerOptions.BaseURL, so
// that a command checks it before a long build.
func CheckBaseURL(base string) error {
	_, err := parseBaseURL(base)
	return err
}

func parseBaseURL(base string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("image base URL %q: want an http:// or https:// URL", base)
	}
	return u, nil
}

func sizeAndSHA256(path string) (int64, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, "", err
	}
	sum, err := fileSHA256(path)
	return fi.Size(), sum, err
}
