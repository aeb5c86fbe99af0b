// Package iptchain keeps packet-filter chains of our own: a chain holds
// exactly the rules it should, in order, and is jumped to once from a
// built-in chain. Nothing outside our chains is touched, and calling Ensure
// again with the same input changes nothing (the rules are compared first and
// rewritten only when they differ, so counters and established state stay).
package iptchain

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// IPTables is the part of github.com/coreos/go-iptables that chains need;
// *iptables.IPTables implements it.
type IPTables interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	ClearChain(table, chain string) error
	ClearAndDeleteChain(table, chain string) error
	List(table, chain string) ([]string, error)
	Append(table, chain string, rulespec ...string) error
	Insert(table, chain string, pos int, rulespec ...string) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	DeleteIfExists(table, chain string, rulespec ...string) error
}

// Chain is one of our chains and where it is jumped to from.
type Chain struct {
	Table string // nat, filter, mangle
	Name  string // e.g. STRAIT-POSTROUTING
	// From is the built-in chain that jumps here, first thing.
	From string
	// Comment marks the jump, so that it is found again and removed.
	Comment string
	// Rules are the chain's rules, each as iptables arguments.
	Rules [][]string
}

func (c Chain) jump() []string {
	return []string{"-m", "comment", "--comment", c.Comment, "-j", c.Name}
}

// Ensure makes the chain exist with exactly c.Rules and be jumped to from
// c.From (inserted first if missing).
func Ensure(ipt IPTables, c Chain) error {
	ok, err := ipt.ChainExists(c.Table, c.Name)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", c.Table, c.Name, err)
	}
	if !ok {
		if err := ipt.NewChain(c.Table, c.Name); err != nil {
			return fmt.Errorf("create %s/%s: %w", c.Table, c.Name, err)
		}
	}
	cur, err := ipt.List(c.Table, c.Name)
	if err != nil {
		return fmt.Errorf("list %s/%s: %w", c.Table, c.Name, err)
	}
	if !sameRules(cur, c) {
		if err := ipt.ClearChain(c.Table, c.Name); err != nil {
			return fmt.Errorf("flush %s/%s: %w", c.Table, c.Name, err)
		}
		for _, r := range c.Rules {
			if err := ipt.Append(c.Table, c.Name, r...); err != nil {
				return fmt.Errorf("%s/%s: %s: %w", c.Table, c.Name, strings.Join(r, " "), err)
			}
		}
	}
	ok, err = ipt.Exists(c.Table, c.From, c.jump()...)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", c.Table, c.From, err)
	}
	if !ok {
		if err := ipt.Insert(c.Table, c.From, 1, c.jump()...); err != nil {
			return fmt.Errorf("jump from %s/%s to %s: %w", c.Table, c.From, c.Name, err)
		}
	}
	return nil
}

// Remove deletes the jump and the chain, if they exist.
func Remove(ipt IPTables, c Chain) error {
	var errs []error
	if err := ipt.DeleteIfExists(c.Table, c.From, c.jump()...); err != nil {
		errs = append(errs, err)
	}
	ok, err := ipt.ChainExists(c.Table, c.Name)
	if err != nil {
		errs = append(errs, err)
	} else if ok {
		errs = append(errs, ipt.ClearAndDeleteChain(c.Table, c.Name))
	}
	return errors.Join(errs...)
}

// sameRules compares the chain's listing ("-N NAME" then "-A NAME ...") with
// the wanted rules. iptables prints rules in its own normal form, so the
// wanted rules are written in that form (see the package tests).
func sameRules(listing []string, c Chain) bool {
	var have []string
	for _, l := range listing {
		if strings.HasPrefix(l, "-A ") {
			have = append(have, strings.TrimPrefix(l, "-A "+c.Name+" "))
		}
	}
	want := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		want[i] = normal(r)
	}
	return slices.Equal(have, want)
}

// normal writes a rule as iptables -S prints it: arguments joined by spaces,
// quoted when they hold a space.
func normal(rule []string) string {
	out := make([]string, len(rule))
	for i, a := range rule {
		if strings.ContainsAny(a, " \t") {
			a = `"` + a + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
