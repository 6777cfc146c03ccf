//go:build sprig

package main

import (
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

// withSprig tells that sprig's functions are registered, as eKuiper registers them.
const withSprig = true

func sprigFuncs() template.FuncMap {
	return template.FuncMap(sprig.FuncMap())
}
