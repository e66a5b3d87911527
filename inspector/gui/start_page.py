"""The first thing an operator sees: New project, Open project, recent projects."""

from __future__ import annotations

from pathlib import Path
from typing import List

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from ..project import is_project
from .app import resource


class StartPage(QWidget):
    newRequested = Signal()
    openRequested = Signal()
    openImagesRequested = Signal()
    recentChosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(40, 30, 40, 30)
        card = QFrame(objectName="card")
        # a fixed width: the wrapped steps then take the height they need, and the card grows to
        # hold the list and the tip (with a maximum width only, the tip was drawn over the list)
        card.setFixedWidth(720)
        outer.addWidget(card, 0, Qt.AlignHCenter | Qt.AlignTop)
        lay = QVBoxLayout(card)
        lay.setContentsMargins(32, 28, 32, 28)
        lay.setSpacing(12)

        head = QHBoxLayout()
        logo = QLabel()
        logo.setPixmap(QIcon(str(resource("icons/inspector.svg"))).pixmap(56, 56))
        head.addWidget(logo)
        titles = QVBoxLayout()
        titles.addWidget(QLabel("Inspector", objectName="title"))
        titles.addWidget(QLabel("Find defective parts from images of good ones.", objectName="subtitle"))
        head.addLayout(titles, 1)
        lay.addLayout(head)

        steps = QLabel(
            "<ol style='margin-left:-20px'>"
            "<li><b>Create a project</b> and add images: a folder of good parts to learn from, "
            "and the parts to check (or an MVTec-style dataset folder).</li>"
            "<li><b>Train a model</b> with the wizard: it learns what good parts look like.</li>"
            "<li><b>Inspect and review</b>: go through the flagged parts, confirm defects with A, "
            "false alarms with N.</li></ol>")
        steps.setWordWrap(True)
        lay.addWidget(steps)

        buttons = QHBoxLayout()
        self.new_button = QPushButton("New project…", objectName="primary")
        self.new_button.clicked.connect(self.newRequested)
        self.open_button = QPushButton("Open project…")
        self.open_button.clicked.connect(self.openRequested)
        self.images_button = QPushButton("Open image folder…")
        self.images_button.setToolTip("Look at a folder of images without creating a project by hand")
        self.images_button.clicked.connect(self.openImagesRequested)
        for b in (self.new_button, self.open_button, self.images_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        lay.addLayout(buttons)

        lay.addWidget(QLabel("Recent projects", objectName="heading"))
        self.recent = QListWidget()
        self.recent.setMinimumHeight(160)
        self.recent.itemActivated.connect(lambda it: self.recentChosen.emit(it.data(Qt.UserRole)))
        self.recent.itemDoubleClicked.connect(lambda it: self.recentChosen.emit(it.data(Qt.UserRole)))
        lay.addWidget(self.recent)
        self.hint = QLabel("Tip: drop a project folder or an image folder onto this window.", objectName="counts")
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint)
        self.card = card
        outer.addStretch(1)

    def set_recent(self, paths: List[str]) -> None:
        self.recent.clear()
        for p in paths:
            ok = is_project(p)
            item = QListWidgetItem(f"{Path(p).name}    —    {p}" + ("" if ok else "   (missing)"))
            item.setData(Qt.UserRole, p)
            if not ok:
                item.setForeground(Qt.gray)
            self.recent.addItem(item)
        if not paths:
            item = QListWidgetItem("No recent projects yet.")
            item.setFlags(Qt.NoItemFlags)
            self.recent.addItem(item)
