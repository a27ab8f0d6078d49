from keras_addrop.ner.entities import entities
from keras_addrop.ner.entities import entity_scores
from keras_addrop.ner.entity_f1 import EntityF1
from keras_addrop.ner.evaluation import EntityEvaluation
from keras_addrop.ner.tagged_files import TaggedSentences
from keras_addrop.ner.tagged_files import load_conll2003
from keras_addrop.ner.tagged_files import read_tagged_file
from keras_addrop.ner.tagged_files import wnut16_file
