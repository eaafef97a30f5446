// Namespace and Directory (core/namespace.h): children by name and in
// listing order, with readdir offsets that stay valid while entries come and
// go (including across the sequence array's compaction).
#include "core/namespace.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvfs {
namespace {

Attributes FileAttr() {
  Attributes a;
  a.mode = 0100644;
  return a;
}

std::vector<std::pair<uint64_t, std::string>> ListAfter(const Directory& d, uint64_t after) {
  std::vector<std::pair<uint64_t, std::string>> out;
  d.ForEachAfter(after, [&](uint64_t seq, Inode* c) {
    out.emplace_back(seq, c->name);
    return true;
  });
  return out;
}

TEST(NamespaceTest, ChildrenAreFoundByNameAndListedInCreationOrder) {
  Namespace ns;
  Inode* a = ns.NewInode(false, FileAttr());
  Inode* b = ns.NewInode(false, FileAttr());
  ns.Attach(ns.root(), a, "alpha");
  ns.Attach(ns.root(), b, "beta");
  EXPECT_EQ(ns.Child(ns.root(), "alpha"), a);
  EXPECT_EQ(ns.Child(ns.root(), "beta"), b);
  EXPECT_EQ(ns.Child(ns.root(), "gamma"), nullptr);
  EXPECT_EQ(ns.Child(ns.root(), "alph"), nullptr);
  auto all = ListAfter(*ns.root()->dir, 0);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].second, "alpha");
  EXPECT_EQ(all[1].second, "beta");
  EXPECT_GT(all[0].first, 2u) << "offsets 1 and 2 belong to . and ..";
  EXPECT_LT(all[0].first, all[1].first);
  EXPECT_EQ(ns.KeyOf(b), "beta");
}

TEST(NamespaceTest, DetachedChildIsGoneAndItsNameCanComeBack) {
  Namespace ns;
  Inode* a = ns.NewInode(false, FileAttr());
  ns.Attach(ns.root(), a, "k");
  uint64_t first_seq = a->dir_seq;
  ns.Detach(a);
  EXPECT_EQ(ns.Child(ns.root(), "k"), nullptr);
  EXPECT_TRUE(ns.root()->dir->empty());
  EXPECT_TRUE(ListAfter(*ns.root()->dir, 0).empty());
  Inode* again = ns.NewInode(false, FileAttr());
  ns.Attach(ns.root(), again, "k");
  EXPECT_EQ(ns.Child(ns.root(), "k"), again);
  EXPECT_GT(again->dir_seq, first_seq) << "a re-added name is listed after entries a reader has passed";
}

TEST(NamespaceTest, OffsetsStayValidWhileManyEntriesAreRemoved) {
  Namespace ns;
  std::vector<Inode*> kids;
  for (int i = 0; i < 1000; ++i) {
    Inode* c = ns.NewInode(false, FileAttr());
    ns.Attach(ns.root(), c, "n" + std::to_string(i));
    kids.push_back(c);
  }
  // A reader has listed up to entry 499 and holds its offset.
  uint64_t offset = kids[499]->dir_seq;
  // Most entries go (enough to compact the sequence array), on both sides
  // of the reader's offset.
  for (int i = 0; i < 1000; ++i) {
    if (i % 10 != 0) ns.Detach(kids[i]);
  }
  EXPECT_EQ(ns.root()->dir->size(), 100u);
  auto rest = ListAfter(*ns.root()->dir, offset);
  ASSERT_EQ(rest.size(), 50u) << "the reader sees exactly the survivors after its offset";
  for (size_t j = 0; j < rest.size(); ++j) {
    EXPECT_EQ(rest[j].second, "n" + std::to_string(500 + 10 * j));
    EXPECT_EQ(rest[j].first, kids[500 + 10 * j]->dir_seq) << "sequence numbers never change";
  }
  // New entries come after everything that was there.
  Inode* late = ns.NewInode(false, FileAttr());
  ns.Attach(ns.root(), late, "late");
  auto tail = ListAfter(*ns.root()->dir, kids[990]->dir_seq);
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_EQ(tail[0].second, "late");
  // Every survivor is still found by name; the removed are not.
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(ns.Child(ns.root(), "n" + std::to_string(i)), i % 10 == 0 ? kids[i] : nullptr) << i;
  }
}

TEST(NamespaceTest, ListingStopsWhenTheCallerSaysSo) {
  Namespace ns;
  for (int i = 0; i < 5; ++i) ns.Attach(ns.root(), ns.NewInode(false, FileAttr()), "f" + std::to_string(i));
  int seen = 0;
  ns.root()->dir->ForEachAfter(0, [&](uint64_t, Inode*) { return ++seen < 2; });
  EXPECT_EQ(seen, 2);
}

TEST(NamespaceTest, ReapFreesOnlyUnreferencedUnlinkedInodes) {
  Namespace ns;
  Inode* d = ns.NewInode(true, Attributes{0, 0, 0, 040755, 0, 0});
  ns.Attach(ns.root(), d, "dir");
  Inode* f = ns.NewInode(false, FileAttr());
  ns.Attach(d, f, "file");
  EXPECT_EQ(ns.KeyOf(f), "dir/file");
  uint64_t fino = f->ino;
  f->nlookup = 1;
  ns.Detach(f);
  ns.Reap(f);
  EXPECT_EQ(ns.Get(fino), f) << "the kernel still holds a lookup";
  f->nlookup = 0;
  ns.Reap(f);
  EXPECT_EQ(ns.Get(fino), nullptr);
  EXPECT_EQ(ns.Get(kRootIno), ns.root());
}

}  // namespace
}  // namespace kvfs
