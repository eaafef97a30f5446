#include "core/namespace.h"

#include <sys/stat.h>

#include <vector>

namespace kvfs {

size_t Directory::NameHash::operator()(const Inode* i) const noexcept { return (*this)(std::string_view(i->name)); }

bool Directory::NameEq::operator()(std::string_view n, const Inode* i) const noexcept { return n == i->name; }

Inode* Directory::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : *it;
}

void Directory::Add(Inode* child) {
  child->dir_seq = next_seq_++;
  by_name_.insert(child);
  by_seq_.emplace_back(child->dir_seq, child);
}

void Directory::Remove(Inode* child) {
  auto it = by_name_.find(std::string_view(child->name));
  if (it == by_name_.end() || *it != child) return;
  by_name_.erase(it);
  auto pos = std::lower_bound(by_seq_.begin(), by_seq_.end(), child->dir_seq,
                              [](const std::pair<uint64_t, Inode*>& e, uint64_t seq) { return e.first < seq; });
  if (pos != by_seq_.end() && pos->first == child->dir_seq) {
    pos->second = nullptr;
    ++holes_;
  }
  if (holes_ > 64 && holes_ > by_seq_.size() / 2) {
    std::erase_if(by_seq_, [](const std::pair<uint64_t, Inode*>& e) { return e.second == nullptr; });
    holes_ = 0;
    if (by_seq_.capacity() > 2 * by_seq_.size() + 16) by_seq_.shrink_to_fit();
  }
}

void Directory::Replace(Inode* old, Inode* fresh) {
  auto it = by_name_.find(std::string_view(old->name));
  if (it == by_name_.end() || *it != old) return;
  by_name_.erase(it);
  fresh->dir_seq = old->dir_seq;
  by_name_.insert(fresh);
  auto pos = std::lower_bound(by_seq_.begin(), by_seq_.end(), old->dir_seq,
                              [](const std::pair<uint64_t, Inode*>& e, uint64_t seq) { return e.first < seq; });
  if (pos != by_seq_.end() && pos->first == old->dir_seq) pos->second = fresh;
}

Namespace::Namespace() {
  root_ = &inodes_[kRootIno];
  root_->ino = kRootIno;
  root_->is_dir = true;
  root_->attr.mode = S_IFDIR | 0755;
  root_->dir = std::make_unique<Directory>();
}

Inode* Namespace::Get(uint64_t ino) const {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : const_cast<Inode*>(&it->second);
}

Inode* Namespace::Child(const Inode* dir, std::string_view name) const {
  if (!dir || !dir->dir) return nullptr;
  return dir->dir->Find(name);
}

Inode* Namespace::NewInode(bool is_dir, const Attributes& attr) {
  uint64_t ino = next_ino_++;
  Inode* inode = &inodes_[ino];
  inode->ino = ino;
  inode->is_dir = is_dir;
  inode->attr = attr;
  if (is_dir) inode->dir = std::make_unique<Directory>();
  return inode;
}

void Namespace::Attach(Inode* dir, Inode* child, std::string name) {
  child->parent = dir;
  child->name = std::move(name);
  dir->dir->Add(child);
  if (child->visible()) dir->dir->visible_entries++;
}

void Namespace::Detach(Inode* child) {
  Inode* dir = child->parent;
  if (!dir) return;
  dir->dir->Remove(child);
  if (child->visible()) dir->dir->visible_entries--;
  child->parent = nullptr;
}

void Namespace::Replace(Inode* old, Inode* fresh) {
  Inode* dir = old->parent;
  if (!dir) return;
  fresh->name = old->name;  // Directory::Replace finds old by name, then hashes fresh by it
  dir->dir->Replace(old, fresh);
  fresh->parent = dir;
  if (old->visible()) dir->dir->visible_entries--;
  if (fresh->visible()) dir->dir->visible_entries++;
  old->parent = nullptr;
}

void Namespace::SetVisible(Inode* child, bool was_visible) {
  if (!child->parent || was_visible == child->visible()) return;
  if (child->visible()) child->parent->dir->visible_entries++;
  else child->parent->dir->visible_entries--;
}

void Namespace::Reap(Inode* inode) {
  if (!inode || inode->ino == kRootIno || inode->linked()) return;
  if (inode->nlookup > 0 || inode->open_handles > 0 || inode->committing) return;
  if (inode->dir) {
    // An unlinked directory is empty (rmdir) or was replaced by rename; detach what is left.
    std::vector<Inode*> children;
    inode->dir->ForEachAfter(0, [&](uint64_t, Inode* c) {
      children.push_back(c);
      return true;
    });
    for (Inode* c : children) {
      Detach(c);
      Reap(c);
    }
  }
  inodes_.erase(inode->ino);
}

std::string Namespace::KeyOf(const Inode* inode) const {
  std::vector<const std::string*> parts;
  for (const Inode* i = inode; i && i->ino != kRootIno; i = i->parent) parts.push_back(&i->name);
  std::string key;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!key.empty()) key += '/';
    key += **it;
  }
  return key;
}

bool Namespace::IsAncestor(const Inode* maybe_ancestor, const Inode* inode) const {
  for (const Inode* i = inode; i; i = i->parent) {
    if (i == maybe_ancestor) return true;
  }
  return false;
}

}  // namespace kvfs
